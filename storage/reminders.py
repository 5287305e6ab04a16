"""Certificate-count reminders already given: one row per event and stage, so no event hears the same stage twice."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
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


def stages_given(session: Session, event_ids: list[str]) -> set[tuple[str, ReminderKind, int]]:
    """Every (event, kind, stage) already recorded for these events."""
    if not event_ids:
        return set()
    rows = session.execute(
        sa.select(ReminderSent.event_id, ReminderSent.kind, ReminderSent.stage).where(
            ReminderSent.event_id.in_(event_ids)
        )
    )
    return {(event_id, kind, stage) for event_id, kind, stage in rows}


def hosts_reminded_on(session: Session, day: dt.date) -> set[str]:
    """Hosts that got a stage digest on ``day``, so the monthly reminder does not mail them twice that morning."""
    rows = session.scalars(
        sa.select(ReminderSent.host_id).where(ReminderSent.run_date == day, ReminderSent.kind != ReminderKind.STAFF)
    )
    return set(rows)
