"""Bulk mailings to the subscriber list (PLP Insider editions, call reminders) and their per-subscriber deliveries.

A delivery row exists once per (mailing, subscriber). It is claimed by a conditional UPDATE before the
message is sent and marked sent after the relay accepted it, so each subscriber gets each mailing once,
across crashes and re-runs. These rows are the durable outbox of a bulk mailing.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, deferred, mapped_column

from storage.base import Base, dialect_insert, enum_column, utcnow
from storage.enums import DeliveryStatus, MailingKind, MailingStatus, SubscriberStatus
from storage.mailing import Subscriber
from storage.mailstate import Suppression


class Mailing(Base):
    __tablename__ = "mailings"
    __table_args__ = (sa.UniqueConstraint("kind", "key", name="uq_mailings_kind_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[MailingKind] = mapped_column(enum_column(MailingKind))
    key: Mapped[str] = mapped_column(sa.String(100))  # the edition key ("2026-11"), or the call date
    status: Mapped[MailingStatus] = mapped_column(enum_column(MailingStatus), default=MailingStatus.DRAFT)
    subject: Mapped[str] = mapped_column(sa.String(998))
    source: Mapped[str] = deferred(mapped_column(sa.Text, default=""))  # the Markdown staff wrote
    text_body: Mapped[str] = deferred(mapped_column(sa.Text, default=""))
    html_body: Mapped[str] = deferred(mapped_column(sa.Text, default=""))  # the inner HTML, before the layout
    document_id: Mapped[int | None] = mapped_column(sa.ForeignKey("documents.id"))  # the PDF archive copy
    send_at: Mapped[dt.datetime | None] = mapped_column()
    approved_by: Mapped[str | None] = mapped_column(sa.String(200))
    approved_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class Delivery(Base):
    __tablename__ = "mailing_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("mailing_id", "email", name="uq_mailing_deliveries_mailing_email"),
        sa.Index("ix_mailing_deliveries_due", "mailing_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailing_id: Mapped[int] = mapped_column(sa.ForeignKey("mailings.id"))
    email: Mapped[str] = mapped_column(sa.String(320))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    status: Mapped[DeliveryStatus] = mapped_column(enum_column(DeliveryStatus), default=DeliveryStatus.PENDING)
    claim: Mapped[str | None] = mapped_column(sa.String(32))  # which sender's batch holds the lease
    claimed_until: Mapped[dt.datetime | None] = mapped_column()  # the lease of a sending row
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()  # a pending row retried after a 4xx
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column()


def enqueue_deliveries(session: Session, mailing_id: int) -> int:
    """Add a pending delivery for every confirmed, deliverable subscriber not already on the mailing; commits.

    Re-running adds only the subscribers who joined since, so a resumed send never mails anyone twice.
    """
    # One INSERT ... SELECT: the rows never pass through Python, which for 10,000 subscribers saves seconds.
    eligible = sa.select(sa.literal(mailing_id), Subscriber.email, Subscriber.name).where(
        Subscriber.status == SubscriberStatus.CONFIRMED,
        ~sa.exists().where(Suppression.email == Subscriber.email),
    ).order_by(Subscriber.email)
    statement = dialect_insert(session, Delivery).from_select(["mailing_id", "email", "name"], eligible).on_conflict_do_nothing()
    added = session.execute(statement).rowcount or 0
    session.commit()
    return added


def skip_undeliverable(session: Session, mailing_id: int) -> int:
    """Mark skipped the pending rows whose subscriber left, bounced or was suppressed since the rows were added."""
    gone = sa.or_(
        sa.exists().where(Suppression.email == Delivery.email),
        ~sa.exists().where(Subscriber.email == Delivery.email, Subscriber.status == SubscriberStatus.CONFIRMED),
    )
    result = session.execute(
        sa.update(Delivery)
        .where(Delivery.mailing_id == mailing_id, Delivery.status == DeliveryStatus.PENDING, gone)
        .values(status=DeliveryStatus.SKIPPED, last_error="unsubscribed or undeliverable at send time")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount or 0


def _due(mailing_id: int, now: dt.datetime) -> sa.ColumnElement[bool]:
    pending = sa.and_(Delivery.status == DeliveryStatus.PENDING,
                      sa.or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now))
    # A sender that died mid-batch leaves its lease behind; once it runs out those rows are due again.
    abandoned = sa.and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_until < now)
    # The IN repeats what the OR says, so the (mailing_id, status) index finds the rows without reading the sent ones.
    live = Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING])
    return sa.and_(Delivery.mailing_id == mailing_id, live, sa.or_(pending, abandoned))


def claim_deliveries(session: Session, mailing_id: int, limit: int, lease: dt.timedelta) -> list[tuple[int, str, str]]:
    """Lease up to ``limit`` due rows to this caller and commit; returns (id, email, name) of the rows won.

    Empty only when nothing is due. Without SKIP LOCKED (SQLite) senders that look at once see the same
    rows and all but one win none; a sender that lost looks again rather than concluding it is done.
    """
    while True:
        candidates_seen, won = _claim_once(session, mailing_id, limit, lease)
        if won or not candidates_seen:
            return won


def _claim_once(
    session: Session, mailing_id: int, limit: int, lease: dt.timedelta
) -> tuple[bool, list[tuple[int, str, str]]]:
    now = utcnow()
    claim = uuid.uuid4().hex
    # In the index's own order, so a claim reads only the rows it takes rather than sorting every due row.
    candidates = sa.select(Delivery.id).where(_due(mailing_id, now)).order_by(Delivery.status, Delivery.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(session.scalars(candidates))
    if not ids:
        session.commit()
        return False, []
    # The WHERE repeats the due condition, so a row another sender claimed meanwhile is not taken twice.
    session.execute(
        sa.update(Delivery)
        .where(Delivery.id.in_(ids), _due(mailing_id, now))
        .values(status=DeliveryStatus.SENDING, claim=claim, claimed_until=now + lease, attempts=Delivery.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    won = session.execute(
        sa.select(Delivery.id, Delivery.email, Delivery.name).where(Delivery.id.in_(ids), Delivery.claim == claim)
        .order_by(Delivery.id)
    )
    return True, [(row.id, row.email, row.name) for row in won]


def mark_sent(session: Session, delivery_ids: list[int]) -> None:
    if delivery_ids:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(delivery_ids))
            .values(status=DeliveryStatus.SENT, sent_at=utcnow(), claimed_until=None, last_error="")
            .execution_options(synchronize_session=False)
        )
        session.commit()


def mark_failed(session: Session, delivery_id: int, error: str) -> None:
    """A permanent failure (5xx): the row stays visible and is never retried."""
    _settle(session, delivery_id, DeliveryStatus.FAILED, error, None)


def release(session: Session, delivery_id: int, error: str, retry_at: dt.datetime) -> None:
    """Give a row back after a transient failure, due again at ``retry_at``."""
    _settle(session, delivery_id, DeliveryStatus.PENDING, error, retry_at)


def _settle(
    session: Session, delivery_id: int, status: DeliveryStatus, error: str, retry_at: dt.datetime | None
) -> None:
    session.execute(
        sa.update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(status=status, claimed_until=None, next_attempt_at=retry_at, last_error=error[:4000])
        .execution_options(synchronize_session=False)
    )
    session.commit()


def unfinished(session: Session, mailing_id: int) -> int:
    """Rows not yet at a final status: pending (perhaps waiting to retry) or sending."""
    query = sa.select(sa.func.count(Delivery.id)).where(
        Delivery.mailing_id == mailing_id, Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING])
    )
    return int(session.scalar(query) or 0)


def delivery_counts(session: Session, mailing_id: int) -> dict[DeliveryStatus, int]:
    rows = session.execute(
        sa.select(Delivery.status, sa.func.count(Delivery.id)).where(Delivery.mailing_id == mailing_id)
        .group_by(Delivery.status)
    )
    return {status: count for status, count in rows}


def find_mailing(session: Session, kind: MailingKind, key: str) -> Mailing | None:
    return session.scalar(sa.select(Mailing).where(Mailing.kind == kind, Mailing.key == key))
