"""Certificate-count reminders already given: one row per event and stage, so no event hears the same stage twice."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.base import Base, enum_column, utcnow
from storage.enums import ReminderKind


class ReminderSent(Base):
    __tablename__ = "reminders_sent"
    __table_args__ = (sa.UniqueConstraint("event_id", "kind", "stage", name="uq_reminders_sent_event_stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.ForeignKey("events.event_id"), index=True)
    host_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    kind: Mapped[ReminderKind] = mapped_column(enum_column(ReminderKind))
    stage: Mapped[int] = mapped_column()  # days after the end date (negative: before it)
    run_date: Mapped[dt.date] = mapped_column(sa.Date, index=True)  # the business day of the run
    outbox_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outbox.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


StageKey = tuple[str, ReminderKind, int]  # (event_id, kind, stage)

# Event IDs per statement, far below PostgreSQL's 65,535-parameter limit.
EVENTS_PER_QUERY = 5_000


def stages_given(session: Session, wanted: Iterable[StageKey]) -> set[StageKey]:
    """Which of the ``wanted`` (event, kind, stage) keys are already recorded.

    Asking for exactly the keys a run could give, rather than reading every stage an event ever
    heard, returns at most one row a key. The keys are asked for one (kind, stage) at a time, as
    ``event_id IN (...)`` probes of the unique index: a handful of stages covers every event.
    """
    by_stage: dict[tuple[ReminderKind, int], list[str]] = defaultdict(list)
    for event_id, kind, stage in dict.fromkeys(wanted):
        by_stage[(kind, stage)].append(event_id)
    found: set[StageKey] = set()
    for (kind, stage), event_ids in by_stage.items():
        for start in range(0, len(event_ids), EVENTS_PER_QUERY):
            chunk = event_ids[start:start + EVENTS_PER_QUERY]
            rows = session.scalars(sa.select(ReminderSent.event_id).where(
                ReminderSent.kind == kind, ReminderSent.stage == stage, event_among(session, chunk)))
            found.update((event_id, kind, stage) for event_id in rows)
    return found


def event_among(session: Session, event_ids: list[str]) -> sa.ColumnElement[bool]:
    """``event_id IN (...)``; on PostgreSQL as one array parameter.

    Thousands of separate bound parameters cost more to expand and send than the query takes to run.
    """
    if session.get_bind().dialect.name == "postgresql":
        return ReminderSent.event_id == sa.any_(sa.bindparam(None, event_ids, type_=postgresql.ARRAY(sa.String)))
    return ReminderSent.event_id.in_(event_ids)


def hosts_reminded_on(session: Session, day: dt.date) -> set[str]:
    """Hosts that got a stage digest on ``day``, so the monthly reminder does not mail them twice that morning."""
    rows = session.scalars(
        sa.select(ReminderSent.host_id).where(ReminderSent.run_date == day, ReminderSent.kind != ReminderKind.STAFF)
    )
    return set(rows)
