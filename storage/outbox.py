"""The outbox: every email and Slack post is a row written in the same transaction as the change that causes it.

Delivery workers claim rows with a conditional UPDATE (plus ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
several processes on one database never send the same row twice while it is leased.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, deferred, mapped_column

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
        sa.select(OutboxItem).where(OutboxItem.id.in_(claimed)).order_by(OutboxItem.id).options(sa.orm.undefer(OutboxItem.body))
    )
    return list(rows)


def first_unfinished(session: Session, channel: Channel, after: int = 0) -> OutboxItem | None:
    """The oldest row of ``channel`` (past id ``after``) not yet sent, failed or skipped: the head of an
    in-order queue."""
    query = (
        sa.select(OutboxItem)
        .where(OutboxItem.channel == channel, OutboxItem.id > after,
               OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
        .order_by(OutboxItem.id)
        .limit(1)
    )
    return session.scalar(query)


def is_due(item: OutboxItem, now: dt.datetime) -> bool:
    if item.status == OutboxStatus.PENDING:
        return item.next_attempt_at <= now
    return item.status == OutboxStatus.SENDING and item.claimed_until is not None and item.claimed_until < now


def claim_row(session: Session, item: OutboxItem, lease: dt.timedelta) -> bool:
    """Lease one due row to this worker; False when it is not due or another worker leased it. The caller commits."""
    now = utcnow()
    result = session.execute(
        sa.update(OutboxItem)
        .where(OutboxItem.id == item.id, _due(item.channel, now))
        .values(status=OutboxStatus.SENDING, claimed_until=now + lease, attempts=OutboxItem.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    session.refresh(item)
    return True


def settle(session: Session, item_id: int, status: OutboxStatus, error: str = "") -> None:
    """Record the end of a row's life: sent, failed for good (stays visible), or skipped."""
    if status not in (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED):
        raise ValueError(f"{status} is not a final outbox status")
    sent_at = utcnow() if status == OutboxStatus.SENT else None
    session.execute(
        sa.update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(status=status, sent_at=sent_at, claimed_until=None, last_error=error[:4000])
    )


def mark_retry(session: Session, item_id: int, error: str, at: dt.datetime) -> None:
    session.execute(
        sa.update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(status=OutboxStatus.PENDING, claimed_until=None, next_attempt_at=at, last_error=error[:4000])
    )


def count_recent(session: Session, recipient: str, kind: str, since: dt.datetime) -> int:
    """How many sends of ``kind`` went to ``recipient`` since ``since`` (the acknowledgement rate limit)."""
    query = sa.select(sa.func.count(OutboxItem.id)).where(
        OutboxItem.recipient == recipient, OutboxItem.kind == kind, OutboxItem.created_at >= since
    )
    return int(session.scalar(query) or 0)
