"""The few settings the workflows need, handed to them by the adapters so workflows never read the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class MailboxPolicy:
    address: str = "OPIPDUPS@mt.gov"
    aliases: tuple[str, ...] = ("OIPDUPS@mt.gov", "OPIRUPS@mt.gov")
    display_name: str = "OPI PDUPS"
    ack_limit_per_hour: int = 3  # two robots answering each other stop after this many
    answer_within_days: int = 3  # older mail (a backlog, a backfill) is filed quietly, never answered
    auto_record_counts: bool = True  # a count from the host's own people is recorded without approval
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("America/Denver"))

    @property
    def addresses(self) -> frozenset[str]:
        """The mailbox and every alias, lower-cased: the only recipients intake accepts."""
        return frozenset(a.strip().lower() for a in (self.address, *self.aliases) if a.strip())

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()
