"""What intake remembers about the outside mail world: IMAP positions and undeliverable addresses."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.base import Base, utcnow


class ImapCursor(Base):
    """The highest UID committed for one IMAP folder, valid only while UIDVALIDITY is unchanged (RFC 3501 2.3.1.1)."""

    __tablename__ = "imap_cursors"

    mailbox: Mapped[str] = mapped_column(sa.String(500), primary_key=True)  # user@host/folder
    uidvalidity: Mapped[int] = mapped_column(sa.BigInteger)
    last_uid: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Suppression(Base):
    """An address we must not mail again: a hard bounce, or an explicit request."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(sa.String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


SUPPRESSED_AMONG = sa.select(Suppression.email).where(Suppression.email.in_(sa.bindparam("emails", expanding=True)))


def is_suppressed(session: Session, email: str) -> bool:
    return session.get(Suppression, email.lower()) is not None


def suppressed_among(session: Session, emails: set[str]) -> set[str]:
    """Which of ``emails`` must not be mailed, in one query (as given, whatever their case)."""
    if not emails:
        return set()
    found = set(session.scalars(SUPPRESSED_AMONG, {"emails": sorted({e.lower() for e in emails})}))
    return {email for email in emails if email.lower() in found}


def suppress(session: Session, email: str, reason: str) -> None:
    """Record ``email`` as undeliverable, keeping the first reason seen."""
    if not is_suppressed(session, email):
        session.add(Suppression(email=email.lower(), reason=reason[:2000]))
