"""Configuration, read only from the environment and an optional .env file. The README lists every variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from workflows.policy import MailboxPolicy


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) into its parts."""
    host, _, port = value.rpartition(":")
    if not host:
        return value.strip("[]"), default_port
    return host.strip("[]"), int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Empty means the embedded default, a SQLite file in the var directory (see database_url_or_default).
    database_url: str = Field("", validation_alias="DATABASE_URL")
    var_dir: Path = Field(Path("var"), validation_alias="PDUBOT_VAR_DIR")
    mailbox: str = Field("OPIPDUPS@mt.gov", validation_alias="PDUBOT_MAILBOX")
    mailbox_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["OIPDUPS@mt.gov", "OPIRUPS@mt.gov"], validation_alias="PDUBOT_MAILBOX_ALIASES"
    )
    mailbox_name: str = Field("OPI PDUPS", validation_alias="PDUBOT_MAILBOX_NAME")
    timezone: str = Field("America/Denver", validation_alias="PDUBOT_TZ")
    ack_limit_per_hour: int = Field(3, validation_alias="PDUBOT_ACK_LIMIT_PER_HOUR")
    answer_within_days: int = Field(3, validation_alias="PDUBOT_ANSWER_WITHIN_DAYS")
    auto_record_counts: bool = Field(True, validation_alias="PDUBOT_AUTO_RECORD_COUNTS")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

    smtp_listen: str = Field("127.0.0.1:2525", validation_alias="SMTP_LISTEN")
    smtp_max_bytes: int = Field(25 * 1024 * 1024, validation_alias="SMTP_MAX_BYTES")

    imap_url: SecretStr | None = Field(None, validation_alias="IMAP_URL")
    imap_oauth2_token: SecretStr | None = Field(None, validation_alias="IMAP_XOAUTH2_TOKEN")
    imap_done_flag: str = Field("$PdubotDone", validation_alias="IMAP_DONE_FLAG")
    imap_done_folder: str = Field("", validation_alias="IMAP_DONE_FOLDER")
    imap_idle_seconds: int = Field(600, validation_alias="IMAP_IDLE_SECONDS")
    imap_poll_seconds: int = Field(30, validation_alias="IMAP_POLL_SECONDS")

    smtp_relay_url: SecretStr | None = Field(None, validation_alias="SMTP_RELAY_URL")
    outbox_poll_seconds: float = Field(1.0, validation_alias="OUTBOX_POLL_SECONDS")
    outbox_max_attempts: int = Field(12, validation_alias="OUTBOX_MAX_ATTEMPTS")

    http_listen: str = Field("127.0.0.1:3000", validation_alias="HTTP_LISTEN")
    public_url: str = Field("http://127.0.0.1:3000", validation_alias="PUBLIC_URL")

    secret_key: SecretStr | None = Field(None, validation_alias="PDUBOT_SECRET_KEY")
    nag_stages: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [3, 14, 30],
                                                       validation_alias="PDUBOT_NAG_STAGES")
    nag_repeat_days: int = Field(30, validation_alias="PDUBOT_NAG_REPEAT_DAYS")
    nag_staff_days: int = Field(60, validation_alias="PDUBOT_NAG_STAFF_DAYS")
    nag_ending_lead_days: int = Field(14, validation_alias="PDUBOT_NAG_ENDING_LEAD_DAYS")
    nag_at: str = Field("08:00", validation_alias="PDUBOT_NAG_AT")
    mailings_at: str = Field("09:00", validation_alias="PDUBOT_MAILINGS_AT")
    misfire_grace_seconds: int = Field(6 * 3600, validation_alias="PDUBOT_MISFIRE_GRACE_SECONDS")
    call_details: str = Field(
        "Join with the Zoom link in your calendar invitation, or call 1-720-707-2699 and enter access code "
        "454 817 432.", validation_alias="PDUBOT_CALL_DETAILS")
    bulk_connections: int = Field(4, validation_alias="PDUBOT_BULK_CONNECTIONS")

    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    slack_channel: str = Field("", validation_alias="SLACK_CHANNEL")
    slack_staff: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="SLACK_STAFF")
    slack_digest_at: str = Field("08:30", validation_alias="SLACK_DIGEST_AT")
    slack_digest_days: int = Field(2, validation_alias="SLACK_DIGEST_DAYS")

    @model_validator(mode="after")
    def database_in_var_dir(self) -> Settings:
        """With no DATABASE_URL, the database lives with the rest of the local state, under PDUBOT_VAR_DIR."""
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'pdubot.db'}"
        return self

    @field_validator("mailbox_aliases", mode="before")
    @classmethod
    def _split_aliases(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("slack_staff", mode="before")
    @classmethod
    def _split_staff(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
        return value

    @field_validator("nag_stages", mode="before")
    @classmethod
    def _split_stages(cls, value: object) -> object:
        if isinstance(value, str):
            return sorted(int(part) for part in value.split(",") if part.strip())
        return value

    @cached_property
    def policy(self) -> MailboxPolicy:
        return MailboxPolicy(
            address=self.mailbox,
            aliases=tuple(self.mailbox_aliases),
            display_name=self.mailbox_name,
            ack_limit_per_hour=self.ack_limit_per_hour,
            answer_within_days=self.answer_within_days,
            auto_record_counts=self.auto_record_counts,
            timezone=ZoneInfo(self.timezone),
        )

    @property
    def outbox_maildir(self) -> Path:
        """Where mail goes when no relay is configured, so a newcomer can read what would have been sent."""
        return self.var_dir / "outbox-maildir"
