"""The monthly staff report: tickets by kind and status, time to decision, overdue counts, mailing figures."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.changes import ChangeRecord
from storage.documents import StoredDocument, file_reference, store_document
from storage.enums import Channel, DeliveryStatus, DocumentKind, SubscriberStatus
from storage.mailing import Subscriber
from storage.mailouts import Delivery, Mailing
from storage.outbox import OutboxItem
from storage.tickets import Ticket
from workflows.calendar import month_bounds
from workflows.formatting import format_date
from workflows.pdf import render_pdf
from workflows.reminders import MONTHLY_KIND, NAG_KIND, overdue_events
from workflows.staff import StaffPost, post_to_staff


@dataclass
class MonthlyFigures:
    year: int
    month: int
    tz: ZoneInfo
    tickets: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> status -> count
    decision_hours: list[float] = field(default_factory=list)
    overdue_as_of: dt.date | None = None
    overdue_by_host: list[dict[str, Any]] = field(default_factory=list)
    mailings: list[dict[str, Any]] = field(default_factory=list)
    reminder_emails: dict[str, int] = field(default_factory=dict)
    unsubscribes: int = 0
    confirmed_subscribers: int = 0

    @property
    def label(self) -> str:
        return dt.date(self.year, self.month, 1).strftime("%B %Y")

    @property
    def key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def statuses(self) -> list[str]:
        return sorted({status for counts in self.tickets.values() for status in counts})

    @property
    def ticket_total(self) -> int:
        return sum(sum(counts.values()) for counts in self.tickets.values())

    @property
    def median_hours(self) -> float | None:
        return statistics.median(self.decision_hours) if self.decision_hours else None

    @property
    def p90_hours(self) -> float | None:
        return percentile(self.decision_hours, 90)

    @property
    def overdue_total(self) -> int:
        return sum(row["count"] for row in self.overdue_by_host)


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``pct`` percent of values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(pct / 100 * len(ordered)) - 1, 0)]


def gather_figures(session: Session, year: int, month: int, tz: ZoneInfo) -> MonthlyFigures:
    start, end = month_bounds(year, month, tz)
    figures = MonthlyFigures(year, month, tz)
    count_tickets(session, figures, start, end)
    time_decisions(session, figures, start, end)
    count_overdue(session, figures, min(end.date(), dt.datetime.now(tz).date()))
    count_mailings(session, figures, start, end)
    return figures


def count_tickets(session: Session, figures: MonthlyFigures, start: dt.datetime, end: dt.datetime) -> None:
    rows = session.execute(
        sa.select(Ticket.kind, Ticket.status, sa.func.count(Ticket.id))
        .where(Ticket.created_at >= start, Ticket.created_at < end).group_by(Ticket.kind, Ticket.status)
    )
    for kind, status, count in rows:
        figures.tickets.setdefault(kind.value, Counter())[status.value] += count


def time_decisions(session: Session, figures: MonthlyFigures, start: dt.datetime, end: dt.datetime) -> None:
    """Hours from a ticket's creation to its decision, for tickets decided in the month."""
    rows = session.execute(
        sa.select(Ticket.created_at, Ticket.decided_at).where(Ticket.decided_at >= start, Ticket.decided_at < end)
    )
    figures.decision_hours = [(decided - created).total_seconds() / 3600 for created, decided in rows]


def count_overdue(session: Session, figures: MonthlyFigures, as_of: dt.date) -> None:
    """Events overdue at the end of the month whose count is still missing now, by host, most first."""
    figures.overdue_as_of = as_of
    by_host: dict[str, dict[str, Any]] = {}
    for event in overdue_events(session, as_of):
        row = by_host.setdefault(event.host_id, {"host_id": event.host_id, "name": event.host_name, "count": 0,
                                                 "oldest": event.end_date})
        row["count"] += 1
        row["oldest"] = min(row["oldest"], event.end_date)
    figures.overdue_by_host = sorted(by_host.values(), key=lambda r: (-r["count"], r["host_id"]))


def count_mailings(session: Session, figures: MonthlyFigures, start: dt.datetime, end: dt.datetime) -> None:
    sent_in_month = sa.and_(Delivery.sent_at >= start, Delivery.sent_at < end)
    touched = sa.select(Delivery.mailing_id).where(sent_in_month).distinct()
    for mailing in session.scalars(sa.select(Mailing).where(Mailing.id.in_(touched)).order_by(Mailing.id)):
        counts: dict[DeliveryStatus, int] = defaultdict(int)
        rows = session.execute(sa.select(Delivery.status, sa.func.count(Delivery.id))
                               .where(Delivery.mailing_id == mailing.id).group_by(Delivery.status))
        for status, count in rows:
            counts[status] = count
        figures.mailings.append({"kind": mailing.kind.value, "key": mailing.key, "subject": mailing.subject,
                                 "sent": counts[DeliveryStatus.SENT], "failed": counts[DeliveryStatus.FAILED],
                                 "skipped": counts[DeliveryStatus.SKIPPED]})
    reminders = session.execute(
        sa.select(OutboxItem.kind, sa.func.count(OutboxItem.id))
        .where(OutboxItem.channel == Channel.EMAIL, OutboxItem.kind.in_([NAG_KIND, MONTHLY_KIND]),
               OutboxItem.created_at >= start, OutboxItem.created_at < end)
        .group_by(OutboxItem.kind)
    )
    figures.reminder_emails = {kind: count for kind, count in reminders}
    figures.unsubscribes = int(session.scalar(
        sa.select(sa.func.count(ChangeRecord.id)).where(
            ChangeRecord.entity == "subscriber", ChangeRecord.action == "unsubscribe",
            ChangeRecord.at >= start, ChangeRecord.at < end)) or 0)
    figures.confirmed_subscribers = int(session.scalar(
        sa.select(sa.func.count()).select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.CONFIRMED)) or 0)


def hours(value: float | None) -> str:
    """``5.2 h`` under two days, ``3.4 days`` beyond."""
    if value is None:
        return "n/a"
    return f"{value:.1f} h" if value < 48 else f"{value / 24:.1f} days"


def render_report(figures: MonthlyFigures) -> bytes:
    generated = dt.datetime.now(figures.tz)
    return render_pdf("report", f=figures, hours=hours, format_date=format_date,
                      generated=f"{format_date(generated.date())} {generated:%H:%M %Z}")


def post_monthly_report(session: Session, year: int, month: int, tz: ZoneInfo) -> StoredDocument:
    """Render the month's report, keep the PDF, and queue it for the staff channel. The caller commits."""
    figures = gather_figures(session, year, month, tz)
    document = store_document(session, DocumentKind.REPORT, figures.key, f"pdubot-report-{figures.key}.pdf",
                              render_report(figures))
    text = (f"Monthly report for {figures.label}: {figures.ticket_total} tickets, "
            f"median time to decision {hours(figures.median_hours)} (p90 {hours(figures.p90_hours)}), "
            f"{figures.overdue_total} events overdue for a certificate count across "
            f"{len(figures.overdue_by_host)} hosts. The PDF is attached.")
    post_to_staff(session, StaffPost.NOTICE, text=text, dedupe_key=f"report:{figures.key}",
                  files=[file_reference(document, f"pdubot report {figures.label}")])
    return document
