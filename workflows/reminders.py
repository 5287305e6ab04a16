"""Certificate-count reminders: find events whose count is overdue, and send each host one digest a run.

Hosts must return to PDUPS after every event and record how many certificates they issued; until they
do, educators may be unable to renew their licences (PDUPS manual, "Reporting Events"). An event is
overdue once its end date has passed with no count recorded and it was not cancelled.

Threading: every digest to a host is an outbound message of that host's open "certificate reminder"
ticket (kind certificate_count, host set, waiting on the host). A host who replies to a digest with
the numbers lands, by In-Reply-To or the [PDU-n] subject tag, in that ticket, in front of staff, where
the certificate-count workflow can read the reply. One ticket per host, not per digest, so a host's
monthly replies do not scatter over dozens of tickets; once staff close it, the next digest opens a
new one.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import OPEN_STATUSES, EventStatus, ReminderKind, TicketKind, TicketStatus
from storage.mailstate import is_suppressed
from storage.registry import Event, Host, User
from storage.reminders import ReminderSent, StageKey, hosts_reminded_on, stages_given
from storage.tickets import Ticket
from workflows.calendar import month_key
from workflows.formatting import format_dates, format_pdus
from workflows.ticket_actions import SYSTEM_ACTOR, audit
from workflows.outgoing import Draft, queue_email
from workflows.policy import MailboxPolicy
from workflows.staff import StaffPost, post_to_staff

logger = logging.getLogger(__name__)

ACTIVE = "active"  # the registry's status for hosts and users that PDUPS still has
REMINDER_FLAG = "certificate_reminder"  # marks the per-host ticket that digests thread under
NAG_KIND = "nag"
MONTHLY_KIND = "monthly_reminder"


@dataclass(frozen=True)
class NagPolicy:
    """When reminders go out, in days after an event's end date (all from settings)."""

    stages: tuple[int, ...] = (3, 14, 30)
    repeat_days: int = 30  # after the last stage, once a month
    staff_days: int = 60  # staff hear about the host in Slack
    ending_lead_days: int = 14  # one-year courses: this many days before the end
    one_year_days: int = 360  # a date range this long is a continuously open (asynchronous) course

    def stage_for(self, days_overdue: int) -> int | None:
        """The latest stage reached ``days_overdue`` days after the end date, or None before the first."""
        stages = sorted(self.stages)
        if not stages or days_overdue < stages[0]:
            return None
        if days_overdue < stages[-1]:
            return max(s for s in stages if s <= days_overdue)
        return stages[-1] + (days_overdue - stages[-1]) // self.repeat_days * self.repeat_days


@dataclass(frozen=True)
class DueEvent:
    """What a reminder needs of an event, read as plain columns: planning over a million events makes no
    ORM objects, whose bookkeeping cost more than the queries."""

    event_id: str
    host_id: str
    host_name: str
    title: str
    start_date: dt.date
    end_date: dt.date
    hours: Decimal

    @property
    def pdus(self) -> Decimal:
        return self.hours  # as Event.pdus: 1 hour = 1 PDU, partial hours never rounded up


@dataclass
class HostPlan:
    """What one run owes one host: the digest lists every overdue event, triggered by the new stages."""

    host_id: str
    overdue: list[DueEvent] = field(default_factory=list)
    new_stages: list[tuple[DueEvent, int]] = field(default_factory=list)
    ending: list[DueEvent] = field(default_factory=list)
    escalate: list[DueEvent] = field(default_factory=list)

    @property
    def needs_digest(self) -> bool:
        return bool(self.new_stages or self.ending)


@dataclass
class ReminderRun:
    """What a run did (or, in a dry run, would do)."""

    day: dt.date
    dry_run: bool = False
    digests: list[dict[str, Any]] = field(default_factory=list)
    staff_summaries: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "dry_run": self.dry_run, "digests": self.digests,
                "staff_summaries": self.staff_summaries, "unreachable": self.unreachable,
                "already_done": self.already_done}


def overdue_filter(today: dt.date) -> sa.ColumnElement[bool]:
    """Ended before ``today``, no certificate count, not cancelled (served by the ix_events_overdue index)."""
    return sa.and_(Event.end_date < today, Event.certificates_issued.is_(None), Event.status == EventStatus.SCHEDULED)


DUE_COLUMNS = (Event.event_id, Event.host_id, Host.name.label("host_name"), Event.title, Event.start_date,
               Event.end_date, Event.hours)


def due_events(session: Session, query: sa.Select[Any]) -> list[DueEvent]:
    return [DueEvent(*row) for row in session.execute(query)]


def overdue_events(session: Session, today: dt.date, host_id: str | None = None) -> list[DueEvent]:
    """Every overdue event of an active host (or of ``host_id``), grouped by host, oldest first."""
    query = (
        sa.select(*DUE_COLUMNS).join(Host, Host.host_id == Event.host_id)
        .where(overdue_filter(today), Host.status == ACTIVE)
        .order_by(Event.host_id, Event.end_date, Event.event_id)
    )
    if host_id is not None:
        query = query.where(Event.host_id == host_id)
    return due_events(session, query)


def ending_courses(session: Session, today: dt.date, policy: NagPolicy, host_id: str | None = None) -> list[DueEvent]:
    """One-year courses that end within the lead time and have no count yet."""
    horizon = today + dt.timedelta(days=policy.ending_lead_days)
    query = (
        sa.select(*DUE_COLUMNS).join(Host, Host.host_id == Event.host_id)
        .where(Event.end_date >= today, Event.end_date <= horizon, Event.certificates_issued.is_(None),
               Event.status == EventStatus.SCHEDULED, Host.status == ACTIVE)
        .order_by(Event.host_id, Event.end_date, Event.event_id)
    )
    if host_id is not None:
        query = query.where(Event.host_id == host_id)
    return [e for e in due_events(session, query) if (e.end_date - e.start_date).days >= policy.one_year_days]


def plan_reminders(session: Session, today: dt.date, policy: NagPolicy, host_id: str | None = None) -> list[HostPlan]:
    """What today's run owes each host (or only ``host_id``), from the events and the stages given. Reads only."""
    overdue = overdue_events(session, today, host_id)
    ending = ending_courses(session, today, policy, host_id)
    due = {event.event_id: policy.stage_for((today - event.end_date).days) for event in overdue}
    given = stages_given(session, stage_keys_due(overdue, ending, due, policy, today))
    plans: dict[str, HostPlan] = {}
    for event in overdue:
        plan = plans.setdefault(event.host_id, HostPlan(event.host_id))
        plan.overdue.append(event)
        stage = due[event.event_id]
        if stage is not None and (event.event_id, ReminderKind.OVERDUE, stage) not in given:
            plan.new_stages.append((event, stage))
        if is_staff_due(event, policy, today) and (event.event_id, ReminderKind.STAFF, policy.staff_days) not in given:
            plan.escalate.append(event)
    for event in ending:
        if (event.event_id, ReminderKind.ENDING, -policy.ending_lead_days) not in given:
            plans.setdefault(event.host_id, HostPlan(event.host_id)).ending.append(event)
    return sorted(plans.values(), key=lambda p: p.host_id)


def is_staff_due(event: DueEvent, policy: NagPolicy, today: dt.date) -> bool:
    return (today - event.end_date).days >= policy.staff_days


def stage_keys_due(
    overdue: list[DueEvent], ending: list[DueEvent], due: dict[str, int | None], policy: NagPolicy, today: dt.date
) -> list[StageKey]:
    """The only stage rows that could stop today's reminders: today's stage for each event, nothing older."""
    keys: list[StageKey] = []
    for event in overdue:
        stage = due[event.event_id]
        if stage is not None:
            keys.append((event.event_id, ReminderKind.OVERDUE, stage))
        if is_staff_due(event, policy, today):
            keys.append((event.event_id, ReminderKind.STAFF, policy.staff_days))
    keys += [(event.event_id, ReminderKind.ENDING, -policy.ending_lead_days) for event in ending]
    return keys


def host_recipients(session: Session, host: Host) -> tuple[str, tuple[str, ...]] | None:
    """The account contact as To and the host's active users as Cc, leaving out undeliverable addresses.

    With no usable contact address, the first active user stands in; with nobody at all, None.
    """
    users = session.scalars(
        sa.select(User).where(User.host_id == host.host_id, User.status == ACTIVE).order_by(User.username)
    )
    candidates = [host.contact_email, *(u.email for u in users)]
    addresses: list[str] = []
    for address in candidates:
        address = address.strip()
        if "@" in address and address.lower() not in {a.lower() for a in addresses} and not is_suppressed(session, address):
            addresses.append(address)
    if not addresses:
        return None
    return addresses[0], tuple(addresses[1:])


def reminder_ticket(session: Session, host: Host, requester: str) -> Ticket:
    """The host's open certificate-reminder ticket, opened now when there is none (see the module docstring)."""
    candidates = session.scalars(
        sa.select(Ticket)
        .where(Ticket.host_id == host.host_id, Ticket.kind == TicketKind.CERTIFICATE_COUNT,
               Ticket.status.in_(OPEN_STATUSES))
        .order_by(Ticket.id.desc())
    )
    for ticket in candidates:
        if REMINDER_FLAG in ticket.flags:
            return ticket
    ticket = Ticket(
        kind=TicketKind.CERTIFICATE_COUNT,
        status=TicketStatus.WAITING_ON_HOST,
        host_id=host.host_id,
        requester=requester.lower(),
        requester_name=host.contact_name,
        subject=f"Certificate counts due: {host.name}",
        confidence=1.0,
        flags=[REMINDER_FLAG],
        fields={"origin": REMINDER_FLAG},
    )
    session.add(ticket)
    session.flush()
    audit(session, ticket, "created", SYSTEM_ACTOR, detail="opened to thread certificate-count reminders")
    return ticket


def event_line(event: DueEvent, today: dt.date) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "title": event.title,
        "dates": format_dates(event.start_date, event.end_date),
        "pdus": format_pdus(event.pdus),
        "days_overdue": max((today - event.end_date).days, 0),
        "end_date": event.end_date.isoformat(),
    }


def digest_draft(
    host: Host, to: str, cc: tuple[str, ...], ticket: Ticket, overdue: list[DueEvent], ending: list[DueEvent],
    today: dt.date, kind: str, dedupe_key: str,
) -> Draft:
    count = len(overdue)
    subject = (f"[{ticket.tag}] Please report certificate counts for {count} event{'s' if count != 1 else ''}"
               if count else f"[{ticket.tag}] Your year-long course ends soon")
    return Draft(
        to=to,
        cc=cc,
        subject=subject,
        template="certificate_reminder",
        context={
            "name": host.contact_name if to.lower() == host.contact_email.lower() else "",
            "host_name": host.name,
            "overdue": [event_line(e, today) for e in overdue],
            "ending": [event_line(e, today) for e in ending],
            "monthly": kind == MONTHLY_KIND,
        },
        kind=kind,
        # RFC 3834 section 5: automatic mail says so, so auto-responders stay quiet.
        auto_submitted="auto-generated",
        dedupe_key=dedupe_key,
    )


def send_reminders(
    sessions: sessionmaker[Session], mailbox: MailboxPolicy, policy: NagPolicy, today: dt.date, dry_run: bool = False
) -> ReminderRun:
    """Run the certificate-count nag for ``today``: one digest per host with new stages, one commit per host.

    A host whose digest another run already committed is skipped (the stage rows are unique), so the
    run is safe to repeat. A dry run plans and reports, and writes nothing.
    """
    run = ReminderRun(today, dry_run)
    with sessions() as session:
        # Hosts owed nothing today (no new stage, no ending course, no staff summary) are not planned again.
        host_ids = [plan.host_id for plan in plan_reminders(session, today, policy)
                    if plan.needs_digest or plan.escalate]
    for host_id in host_ids:
        with sessions() as session:
            # Planned again inside the host's own transaction: another run may have reminded it meanwhile.
            for plan in plan_reminders(session, today, policy, host_id):
                remind_host_once(session, mailbox, policy, plan, today, run)
    return run


def remind_host_once(
    session: Session, mailbox: MailboxPolicy, policy: NagPolicy, plan: HostPlan, today: dt.date, run: ReminderRun
) -> None:
    """One host's digest and staff summary in one commit; a unique-key clash means another run did it."""
    try:
        remind_host(session, mailbox, policy, plan, today, run)
        if run.dry_run:
            session.rollback()
        else:
            session.commit()
    except IntegrityError:
        session.rollback()
        run.already_done.append(plan.host_id)


def remind_host(
    session: Session, mailbox: MailboxPolicy, policy: NagPolicy, plan: HostPlan, today: dt.date, run: ReminderRun
) -> None:
    host = session.get_one(Host, plan.host_id)
    if plan.needs_digest:
        recipients = host_recipients(session, host)
        if recipients is None:
            run.unreachable.append(host.host_id)
        else:
            to, cc = recipients
            if not run.dry_run:
                ticket = reminder_ticket(session, host, to)
                ticket.fields = {**ticket.fields, "event_ids": [e.event_id for e in plan.overdue]}
                draft = digest_draft(host, to, cc, ticket, plan.overdue, plan.ending, today, NAG_KIND,
                                     f"{NAG_KIND}:{host.host_id}:{today.isoformat()}")
                record_stages(session, plan, policy, today, queue_email(session, mailbox, draft, ticket))
            run.digests.append({"host_id": host.host_id, "to": to, "cc": list(cc),
                                "events": [e.event_id for e in plan.overdue],
                                "stages": {e.event_id: s for e, s in plan.new_stages},
                                "ending": [e.event_id for e in plan.ending]})
    if plan.escalate:
        if not run.dry_run:
            tell_staff(session, host, plan, policy, today)
        run.staff_summaries.append(host.host_id)


def record_stages(session: Session, plan: HostPlan, policy: NagPolicy, today: dt.date, outbox_id: int | None) -> None:
    rows = [(e, ReminderKind.OVERDUE, s) for e, s in plan.new_stages]
    rows += [(e, ReminderKind.ENDING, -policy.ending_lead_days) for e in plan.ending]
    for event, kind, stage in rows:
        session.add(ReminderSent(event_id=event.event_id, host_id=event.host_id, kind=kind, stage=stage,
                                 run_date=today, outbox_id=outbox_id))
    session.flush()


def tell_staff(session: Session, host: Host, plan: HostPlan, policy: NagPolicy, today: dt.date) -> None:
    """A Slack summary for staff: this host has events {staff_days} or more days without a count."""
    lines = [f"- {e.event_id} {e.title} ({format_dates(e.start_date, e.end_date)}), "
             f"{(today - e.end_date).days} days overdue" for e in plan.overdue]
    text = (f"Certificate counts overdue {policy.staff_days}+ days: {host.name} ({host.host_id}), "
            f"contact {host.contact_name or 'unknown'} <{host.contact_email or 'no email'}>, "
            f"phone {host.contact_phone or host.phone or 'unknown'}.\n"
            f"{len(plan.overdue)} overdue event(s):\n" + "\n".join(lines))
    post_to_staff(session, StaffPost.NOTICE, text=text,
                  dedupe_key=f"nag-staff:{host.host_id}:{today.isoformat()}")
    for event in plan.escalate:
        session.add(ReminderSent(event_id=event.event_id, host_id=host.host_id, kind=ReminderKind.STAFF,
                                 stage=policy.staff_days, run_date=today))
    session.flush()


def send_monthly_reminders(
    sessions: sessionmaker[Session], mailbox: MailboxPolicy, today: dt.date, dry_run: bool = False
) -> ReminderRun:
    """The monthly reminder: one personal email to every active host with anything overdue.

    A host that already got a stage digest this morning is left out, so nobody gets two the same day.
    """
    run = ReminderRun(today, dry_run)
    with sessions() as session:
        skip = hosts_reminded_on(session, today)
        host_ids = sorted({e.host_id for e in overdue_events(session, today)} - skip)
    for host_id in host_ids:
        with sessions() as session:
            try:
                remind_monthly(session, mailbox, host_id, today, run)
                if dry_run:
                    session.rollback()
                else:
                    session.commit()
            except IntegrityError:
                session.rollback()
                run.already_done.append(host_id)
    return run


def remind_monthly(session: Session, mailbox: MailboxPolicy, host_id: str, today: dt.date, run: ReminderRun) -> None:
    host = session.get(Host, host_id)
    events = overdue_events(session, today, host_id)
    recipients = host_recipients(session, host) if host else None
    if host is None or not events or recipients is None:
        run.unreachable.append(host_id)
        return
    to, cc = recipients
    if not run.dry_run:
        ticket = reminder_ticket(session, host, to)
        ticket.fields = {**ticket.fields, "event_ids": [e.event_id for e in events]}
        draft = digest_draft(host, to, cc, ticket, events, [], today, MONTHLY_KIND,
                             f"{MONTHLY_KIND}:{host_id}:{month_key(today)}")
        queue_email(session, mailbox, draft, ticket)
        session.flush()
    run.digests.append({"host_id": host_id, "to": to, "cc": list(cc), "events": [e.event_id for e in events]})
