"""What staff look at between decisions: open tickets and their age, lookups, this month's numbers, overdue counts."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rapidfuzz import fuzz, process
from sqlalchemy.orm import Session

from storage.enums import OPEN_STATUSES, TicketStatus
from storage.registry import Event, Host
from storage.tickets import AuditEntry, Ticket
from workflows.calendar import is_business_day
from workflows.matching import fold
from workflows.reminders import overdue_events
from workflows.staff_report import MonthlyFigures, gather_figures

TICKET_REFERENCE = re.compile(r"^\s*(?:PDU[-\s]?)?(\d{1,9})\s*$", re.IGNORECASE)
FUZZY_THRESHOLD = 70
FUZZY_LIMIT = 5


@dataclass(frozen=True)
class Waiting:
    """An open ticket and how long it has stood in its current status."""

    ticket: Ticket
    since: dt.datetime
    business_days: int


def business_days_between(start: dt.date, end: dt.date) -> int:
    """Business days after ``start`` up to and including ``end``: Thursday to the next Tuesday is 3."""
    days, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        days += is_business_day(day)
    return days


def open_tickets(session: Session) -> list[Ticket]:
    """Every ticket not yet decided or answered, oldest first."""
    query = sa.select(Ticket).where(Ticket.status.in_(OPEN_STATUSES)).order_by(Ticket.created_at, Ticket.id)
    return list(session.scalars(query))


def status_entered_at(session: Session, ticket: Ticket) -> dt.datetime:
    """When the ticket last moved into its current status; its creation when it never moved."""
    entries = session.scalars(
        sa.select(AuditEntry).where(AuditEntry.ticket_id == ticket.id, AuditEntry.action == "status")
        .order_by(AuditEntry.id.desc())
    )
    for entry in entries:
        if entry.after.get("status") == ticket.status.value:
            return entry.at
    return ticket.created_at


def waiting_on_staff(session: Session, now: dt.datetime, tz: ZoneInfo, more_than: int) -> list[Waiting]:
    """Open tickets in front of staff that have waited more than ``more_than`` business days (Mon-Fri)."""
    today = now.astimezone(tz).date()
    found = []
    for ticket in open_tickets(session):
        if ticket.status != TicketStatus.OPEN:
            continue  # the others wait on the host or the account contact, not on staff
        since = status_entered_at(session, ticket)
        waited = business_days_between(since.astimezone(tz).date(), today)
        if waited > more_than:
            found.append(Waiting(ticket, since, waited))
    return sorted(found, key=lambda w: w.since)


def overdue_by_host(session: Session, today: dt.date) -> list[dict[str, object]]:
    """Events that ended with no certificate count and were not cancelled, counted per host, most first."""
    rows: dict[str, dict[str, object]] = {}
    for event in overdue_events(session, today):  # oldest first within each host, so "oldest" is the first seen
        row = rows.setdefault(event.host_id, {"host_id": event.host_id, "name": event.host_name, "count": 0,
                                              "oldest": event.end_date})
        row["count"] = int(row["count"]) + 1  # type: ignore[call-overload]
    return sorted(rows.values(), key=lambda r: (-int(r["count"]), str(r["host_id"])))  # type: ignore[call-overload]


@dataclass
class Found:
    """What a staff search matched: a ticket by number, hosts and events by id or by name."""

    query: str
    tickets: list[Ticket] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.tickets or self.hosts or self.events)


def find(session: Session, query: str) -> Found:
    """A ticket (``PDU-1042`` or ``1042``), a host (id or fuzzy name) or an event (id or fuzzy title)."""
    found = Found(query.strip())
    if not found.query:
        return found
    reference = TICKET_REFERENCE.match(found.query)
    if reference:
        ticket = session.get(Ticket, Ticket.id_for_number(int(reference.group(1))))
        found.tickets = [ticket] if ticket is not None else []
    found.hosts = _hosts_by_id_or_name(session, found.query)
    found.events = _events_by_id_or_title(session, found.query)
    return found


def _hosts_by_id_or_name(session: Session, query: str) -> list[Host]:
    exact = session.scalar(sa.select(Host).where(sa.func.lower(Host.host_id) == query.lower()))
    if exact is not None:
        return [exact]
    hosts = {host.host_id: host for host in session.scalars(sa.select(Host))}
    names = {host_id: fold(host.name) for host_id, host in hosts.items()}
    return [hosts[key] for key in _fuzzy(query, names)]


def _events_by_id_or_title(session: Session, query: str) -> list[Event]:
    exact = session.scalar(sa.select(Event).where(sa.func.lower(Event.event_id) == query.lower()))
    if exact is not None:
        return [exact]
    events = {event.event_id: event for event in session.scalars(sa.select(Event))}
    titles = {event_id: fold(event.title) for event_id, event in events.items()}
    return [events[key] for key in _fuzzy(query, titles)]


def _fuzzy(query: str, choices: dict[str, str]) -> list[str]:
    """Keys of the best-matching names; digits-only queries never match names (they are numbers)."""
    folded = fold(query)
    if not folded or folded.isdigit():
        return []
    matches = process.extract(folded, choices, scorer=fuzz.WRatio, limit=FUZZY_LIMIT, score_cutoff=FUZZY_THRESHOLD)
    return [key for _, _, key in matches]


def tickets_about(session: Session, host_id: str | None = None, event_id: str | None = None) -> list[Ticket]:
    """The latest tickets about a host or an event, newest first."""
    query = sa.select(Ticket).order_by(Ticket.id.desc()).limit(10)
    if event_id is not None:
        query = query.where(Ticket.event_id == event_id)
    elif host_id is not None:
        query = query.where(Ticket.host_id == host_id)
    return list(session.scalars(query))


def month_figures(session: Session, now: dt.datetime, tz: ZoneInfo) -> MonthlyFigures:
    """This month so far: tickets by kind and status, decisions and time to decision (the monthly report's figures)."""
    local = now.astimezone(tz)
    return gather_figures(session, local.year, local.month, tz)
