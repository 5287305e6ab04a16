"""The outbox: every email and Slack post is a row written in the same transaction as the change that causes it.

Delivery workers claim rows with a conditional UPDATE (plus ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
several processes on one database never send the same row twice while it is leased.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, deferred, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from storage.base import Base, enum_column, utcnow
from storage.enums import Channel, OutboxStatus
from storage.mailstate import Suppression


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


OUTBOX: sa.Table = OutboxItem.__table__  # type: ignore[assignment]
_C = OUTBOX.c

# The statements delivery runs for every row are built once, with bound parameters: building a statement and its
# cache key costs more than running it, and a Core statement skips the ORM's bulk-update bookkeeping.


def _due() -> sa.ColumnElement[bool]:
    """A row of the bound ``channel`` that is due at the bound ``now``."""
    now = sa.bindparam("now", type_=_C.next_attempt_at.type)
    pending = sa.and_(_C.status == OutboxStatus.PENDING, _C.next_attempt_at <= now)
    # A worker that died mid-send leaves its lease behind; once the lease runs out the row is due again.
    abandoned = sa.and_(_C.status == OutboxStatus.SENDING, _C.claimed_until < now)
    return sa.and_(_C.channel == sa.bindparam("of_channel", type_=_C.channel.type), sa.or_(pending, abandoned))


def _claim(rows: sa.ColumnElement[bool]) -> sa.Update:
    """Lease ``rows`` while they are still due: the condition is checked again on the row being updated, so two
    workers that both saw a row due cannot both claim it."""
    return (
        sa.update(OUTBOX).where(rows, _due())
        .values(status=OutboxStatus.SENDING, claimed_until=sa.bindparam("until", type_=_C.claimed_until.type),
                attempts=_C.attempts + 1)
    )


def _oldest_due(skip_locked: bool) -> sa.Select[tuple[int]]:
    query = sa.select(_C.id).where(_due()).order_by(_C.id).limit(sa.bindparam("limit", type_=sa.Integer))
    # PostgreSQL: workers claiming at the same moment take different rows instead of waiting for each other.
    return query.with_for_update(skip_locked=True) if skip_locked else query


def _claim_oldest(skip_locked: bool) -> sa.Select[tuple[OutboxItem]]:
    """The oldest due rows, leased in one statement and read back as objects with their bodies."""
    # Materialized, so the oldest rows are chosen once: PostgreSQL may otherwise run a LIMIT ... SKIP LOCKED
    # subquery again for each row it updates, and lease more rows than asked for.
    oldest = _oldest_due(skip_locked).cte("oldest_due").prefix_with("MATERIALIZED")
    claim = _claim(_C.id.in_(sa.select(oldest.c.id))).returning(*OUTBOX.c)
    return (sa.select(OutboxItem).options(sa.orm.undefer(OutboxItem.body)).from_statement(claim)
            .execution_options(populate_existing=True))  # the claim's own values, even for a row already loaded


CLAIM_DUE = {skip_locked: _claim_oldest(skip_locked) for skip_locked in (False, True)}
CLAIM_ROW = _claim(_C.id == sa.bindparam("item_id")).returning(_C.attempts)
UNFINISHED = (
    sa.select(OutboxItem)
    .where(OutboxItem.channel == sa.bindparam("of_channel"),
           OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
    .order_by(OutboxItem.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
# A row, and with ``attempts``, only while it is still leased under that claim (each claim adds one), so a worker
# whose lease ran out and was taken over cannot overwrite what the new holder does.
_ROW = _C.id == sa.bindparam("item_id")
_HELD = sa.and_(_ROW, _C.status == OutboxStatus.SENDING, _C.attempts == sa.bindparam("claim"))
_SETTLED = {"status": sa.bindparam("new_status", type_=_C.status.type), "claimed_until": None,
            "sent_at": sa.bindparam("sent", type_=_C.sent_at.type), "last_error": sa.bindparam("error")}
SETTLE = {held: sa.update(OUTBOX).where(_HELD if held else _ROW).values(**_SETTLED) for held in (False, True)}
RETRY = {held: sa.update(OUTBOX).where(_HELD if held else _ROW).values(
    status=OutboxStatus.PENDING, claimed_until=None, next_attempt_at=sa.bindparam("at", type_=_C.next_attempt_at.type),
    last_error=sa.bindparam("error")) for held in (False, True)}
_GIVEN_BACK = {"status": OutboxStatus.PENDING, "claimed_until": None, "attempts": _C.attempts - 1}
GIVE_BACK = {with_error: sa.update(OUTBOX).where(_HELD).values(
    **_GIVEN_BACK, **({"last_error": sa.bindparam("error")} if with_error else {})) for with_error in (False, True)}
# Through the ORM, so that the session's unwritten rows count too (it flushes them first).
RECENT_AND_SUPPRESSED = sa.select(
    sa.select(sa.func.count(OutboxItem.id)).where(
        OutboxItem.recipient == sa.bindparam("recipient"), OutboxItem.kind == sa.bindparam("kind"),
        OutboxItem.created_at >= sa.bindparam("since")).scalar_subquery(),
    sa.exists().where(Suppression.email == sa.bindparam("email")),
)


def claim_due(session: Session, channel: Channel, limit: int, lease: dt.timedelta) -> list[OutboxItem]:
    """Lease up to ``limit`` due rows of ``channel`` to this worker, oldest first, and commit the lease."""
    now = utcnow()
    query = CLAIM_DUE[session.get_bind().dialect.name == "postgresql"]
    items = list(session.scalars(query, {"of_channel": channel, "now": now, "until": now + lease, "limit": limit}))
    session.commit()
    return sorted(items, key=lambda item: item.id)  # RETURNING has no order


def unfinished(session: Session, channel: Channel, limit: int) -> list[OutboxItem]:
    """The oldest ``limit`` rows of ``channel`` not yet sent, failed or skipped, in order: the head of an in-order
    queue and what follows it."""
    return list(session.scalars(UNFINISHED, {"of_channel": channel, "limit": limit}))


def is_due(item: OutboxItem, now: dt.datetime) -> bool:
    if item.status == OutboxStatus.PENDING:
        return item.next_attempt_at <= now
    return item.status == OutboxStatus.SENDING and item.claimed_until is not None and item.claimed_until < now


def claim_row(session: Session, item: OutboxItem, lease: dt.timedelta) -> bool:
    """Lease one due row to this worker; False when it is not due or another worker leased it. The caller commits.
    ``item`` then carries the claim as the database has it (its attempts fence the claim)."""
    now = utcnow()
    params = {"item_id": item.id, "of_channel": item.channel, "now": now, "until": now + lease}
    attempts = session.connection().execute(CLAIM_ROW, params).scalar()
    if attempts is None:
        return False
    for name, value in (("status", OutboxStatus.SENDING), ("claimed_until", now + lease), ("attempts", attempts)):
        set_committed_value(item, name, value)
    return True


def settle(session: Session, item_id: int, status: OutboxStatus, error: str = "", attempts: int | None = None) -> bool:
    """Record the end of a row's life: sent, failed for good (stays visible), or skipped. False when ``attempts``
    is given and the claim is no longer the holder's."""
    if status not in (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED):
        raise ValueError(f"{status} is not a final outbox status")
    params = {"item_id": item_id, "claim": attempts, "new_status": status, "error": error[:4000],
              "sent": utcnow() if status == OutboxStatus.SENT else None}
    return session.connection().execute(SETTLE[attempts is not None], params).rowcount == 1


def mark_retry(session: Session, item_id: int, error: str, at: dt.datetime, attempts: int | None = None) -> None:
    """The row failed for its own reason and is tried again at ``at``."""
    params = {"item_id": item_id, "claim": attempts, "error": error[:4000], "at": at}
    session.connection().execute(RETRY[attempts is not None], params)


def give_back(session: Session, item_id: int, attempts: int, error: str | None = None) -> None:
    """Undo a claim: the row was not tried, or its destination failed as a whole, which is not the row's fault.
    It keeps its place in line (``next_attempt_at`` unchanged) and its claim is not counted as an attempt."""
    params = {"item_id": item_id, "claim": attempts, "error": (error or "")[:4000]}
    session.connection().execute(GIVE_BACK[error is not None], params)


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


class Standing(NamedTuple):
    """How a recipient stands before an automatic answer."""

    recent: int  # sends of the kind since the time asked about
    suppressed: bool  # bounced or asked not to be mailed


def standing(session: Session, recipient: str, kind: str, since: dt.datetime) -> Standing:
    """How many sends of ``kind`` went to ``recipient`` since ``since`` (the acknowledgement rate limit), and
    whether the address is suppressed: one round trip, because intake asks both before every automatic answer."""
    params = {"recipient": recipient, "kind": kind, "since": since, "email": recipient.lower()}
    recent, suppressed = session.execute(RECENT_AND_SUPPRESSED, params).one()
    return Standing(int(recent or 0), bool(suppressed))
