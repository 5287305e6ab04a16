"""Factories for test data: emails as raw bytes, and registry rows."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage

from sqlalchemy.orm import Session, sessionmaker

from storage.enums import EventStatus, HostKind
from storage.registry import Event, Host, User
from workflows.matching import forget_registry_index

MAILBOX = "OPIPDUPS@mt.gov"
_counter = itertools.count(1)


@dataclass
class MailFactory:
    """Builds realistic host emails. Every call gets a fresh Message-ID unless one is given."""

    default_from: str = "Jane Doe <jdoe@gfps.k12.mt.us>"
    sent: list[bytes] = field(default_factory=list)

    def message(
        self,
        body: str = "Please remove our cancelled workshop from PDUPS.",
        subject: str = "Cancelled workshop",
        sender: str | None = None,
        to: str = MAILBOX,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: list[str] | None = None,
        headers: dict[str, str] | None = None,
        html: str | None = None,
        date: dt.datetime | None = None,
    ) -> EmailMessage:
        n = next(_counter)
        msg = EmailMessage()
        msg["From"] = sender or self.default_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.timezone.utc))
        msg["Message-ID"] = message_id or f"<test-{n}-{id(self)}@gfps.k12.mt.us>"
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
        if references:
            msg["References"] = " ".join(references)
        for name, value in (headers or {}).items():
            msg[name] = value
        if html is not None:
            msg.set_content(html, subtype="html")
        else:
            msg.set_content(body)
        return msg

    def raw(self, **kwargs: object) -> bytes:
        """The message as it travels over SMTP: CRLF line endings (RFC 5321 section 2.3.8)."""
        return self.message(**kwargs).as_bytes(policy=email.policy.SMTP)  # type: ignore[arg-type]


def add_host(session: Session, host_id: str = "H0001", **overrides: object) -> Host:
    values: dict[str, object] = {
        "host_id": host_id,
        "name": "Great Falls Public Schools",
        "kind": HostKind.MULTIPLE,
        "phone": "(406) 555-0100",
        "contact_name": "Jane Doe",
        "contact_email": "jdoe@gfps.k12.mt.us",
        "contact_phone": "(406) 555-0142",
        "status": "active",
    }
    values.update(overrides)
    host = Host(**values)
    session.add(host)
    return host


def add_user(session: Session, username: str = "BSmith", host_id: str = "H0001", **overrides: object) -> User:
    values: dict[str, object] = {
        "username": username,
        "full_name": "Bob Smith",
        "email": "bsmith@gfps.k12.mt.us",
        "phone": "",
        "host_id": host_id,
        "status": "active",
    }
    values.update(overrides)
    user = User(**values)
    session.add(user)
    return user


def add_event(session: Session, event_id: str = "E10001", host_id: str = "H0001", **overrides: object) -> Event:
    values: dict[str, object] = {
        "event_id": event_id,
        "host_id": host_id,
        "title": "Math Night Part 1",
        "instructor": "Ann Lee",
        "description": "Family math night strategies",
        "categories": ["Mathematics"],
        "start_date": dt.date(2026, 10, 14),
        "end_date": dt.date(2026, 10, 14),
        "online": False,
        "city": "Great Falls",
        "zip": "59401",
        "state": "MT",
        "hours": Decimal("3.5"),
        "certificates_issued": None,
        "status": EventStatus.SCHEDULED,
    }
    values.update(overrides)
    event = Event(**values)
    session.add(event)
    return event


TODAY = dt.date.today()


def seed_registry(sessions: sessionmaker[Session]) -> None:
    """Great Falls Public Schools with its contact and one user, an event that ended and one still to come."""
    with sessions() as session:
        add_host(session)
        session.flush()
        add_user(session)
        add_event(session, "E10001", title="Math Night Part 1", start_date=TODAY - dt.timedelta(days=20),
                  end_date=TODAY - dt.timedelta(days=20))
        add_event(session, "E10002", title="Winter Literacy Institute", start_date=TODAY + dt.timedelta(days=40),
                  end_date=TODAY + dt.timedelta(days=41))
        session.commit()
    forget_registry_index()
