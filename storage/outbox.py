"""The outbox: every email and Slack post is a row written in the same transaction as the change that causes it.

Delivery workers claim rows with a conditional UPDATE (plus ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
several processes on one database never send the same row twice while it is leased.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, deferred, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from storage.base import Base, enum_column, utcnow
from storage.enums import Channel, OutboxStatus


class OutboxItem(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_due", "channel", "status", "next_attempt_at"),
        sa.Index("ix_outbox_recipient_kind_created", "recipient", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[Channel] = mapped_column(enum_column(Channel))
    status: Mapped[OutboxStatus] = mapped_column(enum_column(OutboxStatus), default=OutboxStatus.PENDING)
    kind: Mapped[str] = mapped_column(sa.String(64))  # what it is for: ack, reply, nag, slack_card ...
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"), index=True)
    recipient: Mapped[str] = mapped_column(sa.String(320), default="")
    sender: Mapped[str] = mapped_column(sa.String(320), default="")
    message_id: Mapped[str] = mapped_column(sa.String(998), default="")
    # Enqueueing is idempotent by this key: the same cause never queues the same send twice.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(300), unique=True)
    body: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary, default=b""))  # the whole RFC 5322 message
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Slack API arguments
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()


def _due(channel: Channel, now: dt.datetime) -> sa.ColumnElement[bool]:
    pending = sa.and_(OutboxItem.status == OutboxStatus.PENDING, OutboxItem.next_attempt_at <= now)
    # A worker that died mid-send leaves its lease behind; once the lease runs out the row is due again.
    abandoned = sa.and_(OutboxItem.status == OutboxStatus.SENDING, OutboxItem.claimed_until < now)
    return sa.and_(OutboxItem.channel == channel, sa.or_(pending, abandoned))


def claim_due(session: Session, channel: Channel, limit: int, lease: dt.timedelta) -> list[OutboxItem]:
    """Lease up to ``limit`` due rows of ``channel`` to this worker, oldest first, and commit the lease."""
    now = utcnow()
    query = sa.select(OutboxItem.id).where(_due(channel, now)).order_by(OutboxItem.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed: list[int] = []
    for item_id in session.scalars(query).all():
        result = session.execute(
            sa.update(OutboxItem)
            .where(OutboxItem.id == item_id, _due(channel, now))
            .values(status=OutboxStatus.SENDING, claimed_until=now + lease, attempts=OutboxItem.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append(item_id)
    session.commit()
    if not claimed:
        return []
    rows = session.scalars(
        sa.select(OutboxItem).where(OutboxItem.id.in_(claimed)).order_by(OutboxItem.id)
        .options(sa.orm.undefer(OutboxItem.body)).execution_options(populate_existing=True)  # the claim's own values
    )
    return list(rows)


def unfinished(session: Session, channel: Channel, limit: int) -> list[OutboxItem]:
    """The oldest ``limit`` rows of ``channel`` not yet sent, failed or skipped, in order: the head of an in-order
    queue and what follows it."""
    query = (
        sa.select(OutboxItem)
        .where(OutboxItem.channel == channel, OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
        .order_by(OutboxItem.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def is_due(item: OutboxItem, now: dt.datetime) -> bool:
    if item.status == OutboxStatus.PENDING:
        return item.next_attempt_at <= now
    return item.status == OutboxStatus.SENDING and item.claimed_until is not None and item.claimed_until < now


def claim_row(session: Session, item: OutboxItem, lease: dt.timedelta) -> bool:
    """Lease one due row to this worker; False when it is not due or another worker leased it. The caller commits.
    ``item`` then carries the claim as the database has it (its attempts fence the claim)."""
    now = utcnow()
    attempts = session.scalar(
        sa.update(OutboxItem)
        .where(OutboxItem.id == item.id, _due(item.channel, now))
        .values(status=OutboxStatus.SENDING, claimed_until=now + lease, attempts=OutboxItem.attempts + 1)
        .returning(OutboxItem.attempts)
        .execution_options(synchronize_session=False)
    )
    if attempts is None:
        return False
    for name, value in (("status", OutboxStatus.SENDING), ("claimed_until", now + lease), ("attempts", attempts)):
        set_committed_value(item, name, value)
    return True


def _held(item_id: int, attempts: int | None) -> sa.ColumnElement[bool]:
    """The row, and with ``attempts``, only while it is still leased under that claim (each claim adds one), so a
    worker whose lease ran out and was taken over cannot overwrite what the new holder does."""
    if attempts is None:
        return OutboxItem.id == item_id
    return sa.and_(OutboxItem.id == item_id, OutboxItem.status == OutboxStatus.SENDING,
                   OutboxItem.attempts == attempts)


def settle(session: Session, item_id: int, status: OutboxStatus, error: str = "", attempts: int | None = None) -> bool:
    """Record the end of a row's life: sent, failed for good (stays visible), or skipped. False when ``attempts``
    is given and the claim is no longer the holder's."""
    if status not in (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED):
        raise ValueError(f"{status} is not a final outbox status")
    sent_at = utcnow() if status == OutboxStatus.SENT else None
    result = session.execute(
        sa.update(OutboxItem)
        .where(_held(item_id, attempts))
        .values(status=status, sent_at=sent_at, claimed_until=None, last_error=error[:4000])
    )
    return result.rowcount == 1


def mark_retry(session: Session, item_id: int, error: str, at: dt.datetime, attempts: int | None = None) -> None:
    """The row failed for its own reason and is tried again at ``at``."""
    session.execute(
        sa.update(OutboxItem)
        .where(_held(item_id, attempts))
        .values(status=OutboxStatus.PENDING, claimed_until=None, next_attempt_at=at, last_error=error[:4000])
    )


def give_back(session: Session, item_id: int, attempts: int, error: str | None = None) -> None:
    """Undo a claim: the row was not tried, or its destination failed as a whole, which is not the row's fault.
    It keeps its place in line (``next_attempt_at`` unchanged) and its claim is not counted as an attempt."""
    values: dict[str, Any] = {"status": OutboxStatus.PENDING, "claimed_until": None, "attempts": attempts - 1}
    if error is not None:
        values["last_error"] = error[:4000]
    session.execute(sa.update(OutboxItem).where(_held(item_id, attempts)).values(**values)
                    .execution_options(synchronize_session=False))


def renew_leases(session: Session, held: dict[int, int], until: dt.datetime) -> int:
    """Extend the leases a live worker still holds (row id -> attempts at its claim); returns how many."""
    if not held:
        return 0
    result = session.execute(
        sa.update(OutboxItem)
        .where(OutboxItem.status == OutboxStatus.SENDING,
               sa.tuple_(OutboxItem.id, OutboxItem.attempts).in_(list(held.items())))
        .values(claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def count_recent(session: Session, recipient: str, kind: str, since: dt.datetime) -> int:
    """How many sends of ``kind`` went to ``recipient`` since ``since`` (the acknowledgement rate limit)."""
    query = sa.select(sa.func.count(OutboxItem.id)).where(
        OutboxItem.recipient == recipient, OutboxItem.kind == kind, OutboxItem.created_at >= since
    )
    return int(session.scalar(query) or 0)
