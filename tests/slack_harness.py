"""The staff Slack app running for real against the fake Slack: the service's HTTP server with /slack/events
on a free port, a Slack deliverer pointed at the fake, and helpers that send what Slack would send."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from bot.slack.app import build_app, mount_events, web_client
from bot.slack.deliverer import SlackDeliverer
from bot.web import make_web_app, start_web
from storage.enums import Channel, OutboxStatus, Source
from storage.outbox import OutboxItem
from tests.factories import seed_registry  # noqa: F401  (the Slack tests import it from here)
from tests.servers import free_port, loop_thread, run_on
from tests.slack_fake import (
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    FakeSlack,
    block_action,
    command_body,
    event_body,
    fake_slack,
    interaction_body,
    post,
    signature_headers,
    view_submission,
)
from workflows.inbox import receive
from workflows.policy import MailboxPolicy

USER = "Bob Smith <bsmith@gfps.k12.mt.us>"
STRANGER = "Pat Jones <pat.jones.mt@gmail.com>"
ANN = "U0ANN0001"  # staff, named in SLACK_STAFF
BEA = "U0BEA0002"  # staff, through the user group
EVE = "U0EVE0003"  # not staff
STAFF_GROUP = "S0PLSTAFF"
FORM = "application/x-www-form-urlencoded"


@dataclass
class SlackRig:
    fake: FakeSlack
    sessions: sessionmaker[Session]
    settings: Settings
    deliverer: SlackDeliverer
    events_url: str
    loop: Any

    def send(self, body: str, content_type: str = FORM, retry: int | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str]:
        """POST ``body`` to /slack/events, signed unless ``headers`` are given; the HTTP status and body."""
        return post(self.events_url, body, headers or signature_headers(body, retry=retry), content_type)

    def click(self, action_id: str, number: int, user_id: str = ANN, retry: int | None = None) -> int:
        return self.send(interaction_body(block_action(action_id, str(number), user_id)), retry=retry)[0]

    def submit(self, callback_id: str, values: dict[str, Any], metadata: dict[str, Any],
               user_id: str = ANN) -> tuple[int, str]:
        return self.send(interaction_body(view_submission(callback_id, values, json.dumps(metadata), user_id)))

    def event(self, event: dict[str, Any], retry: int | None = None, event_id: str = "Ev0001") -> int:
        return self.send(event_body(event, event_id), "application/json", retry=retry)[0]

    def command(self, text: str, user_id: str = ANN, key: str = "r1") -> int:
        return self.send(command_body(text, user_id, self.fake.response_url(key)))[0]

    def deliver(self) -> int:
        """Post everything due in the Slack outbox now."""
        return int(run_on(self.loop, self.deliverer.drain()))

    def deliver_all(self, timeout: float = 15.0) -> None:
        """Deliver until no Slack row is pending, waiting out Retry-After and backoff."""
        deadline = time.monotonic() + timeout
        while self.unfinished() and time.monotonic() < deadline:
            if not self.deliver():
                time.sleep(0.05)
        assert not self.unfinished(), "Slack rows still pending"

    def unfinished(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(
                OutboxItem.channel == Channel.SLACK,
                OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))) or 0)


def rig_settings(fake: FakeSlack, db_url: str, **overrides: str) -> Settings:
    values = {"DATABASE_URL": db_url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
              "SLACK_API_URL": fake.api_url, "SLACK_CHANNEL": CHANNEL, "SLACK_STAFF": f"{ANN},{STAFF_GROUP}",
              **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def no_backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(0)


@contextmanager
def slack_rig(sessions: sessionmaker[Session], db_url: str) -> Iterator[SlackRig]:
    with fake_slack() as fake, loop_thread() as loop:
        fake.groups[STAFF_GROUP] = [BEA]
        fake.names.update({ANN: "Ann", BEA: "Bea", EVE: "Eve"})
        settings = rig_settings(fake, db_url)
        web_app = make_web_app(sessions)
        mount_events(web_app, build_app(settings, sessions, on_change=lambda: None))
        port = free_port()
        runner = run_on(loop, start_web(web_app, "127.0.0.1", port))
        deliverer = SlackDeliverer(sessions, web_client(settings, retry_handlers=[]), CHANNEL,
                                   settings.policy.timezone, backoff=no_backoff)
        try:
            yield SlackRig(fake, sessions, settings, deliverer, f"http://127.0.0.1:{port}/slack/events", loop)
        finally:
            run_on(loop, runner.cleanup())




def take(sessions: sessionmaker[Session], raw: bytes) -> int:
    """Take one email through intake, as SMTP would; returns the ticket number."""
    return receive(sessions, raw, Source.FILE, MailboxPolicy()).ticket_number
