"""Read a request as staff would: which kind it is, which host and event it is about, and what is missing.

The kind modules under ``workflows.kinds`` will each say how their kind is recognised; until they land,
every request is read as ``other`` and matched to a host by its sender, so staff still see it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.enums import TicketKind, TicketStatus
from storage.registry import Host, User
from workflows.parsing import ParsedMail


@dataclass
class Reading:
    kind: TicketKind
    confidence: float
    host_id: str | None = None
    event_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    understood: str = ""  # one plain sentence for the host's acknowledgement
    next_step: str = "OPI Professional Learning staff will review your request and reply to you by email."

    @property
    def status(self) -> TicketStatus:
        return TicketStatus.NEEDS_INFO if self.missing else TicketStatus.OPEN

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "confidence": round(self.confidence, 3),
            "host_id": self.host_id,
            "event_id": self.event_id,
            "fields": self.fields,
            "missing": self.missing,
            "flags": self.flags,
        }


def read(session: Session, parsed: ParsedMail, today: dt.date | None = None) -> Reading:
    """Read one request. ``today`` defaults to the day of the message's Date header."""
    return Reading(kind=TicketKind.OTHER, confidence=0.0, host_id=host_for_sender(session, parsed.from_addr))


def host_for_sender(session: Session, address: str) -> str | None:
    """The host whose user or account contact writes from ``address``, when exactly one does."""
    if not address:
        return None
    address = address.lower()
    hosts = set(session.scalars(sa.select(User.host_id).where(sa.func.lower(User.email) == address)))
    hosts |= set(session.scalars(sa.select(Host.host_id).where(sa.func.lower(Host.contact_email) == address)))
    return hosts.pop() if len(hosts) == 1 else None
