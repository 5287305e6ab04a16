"""The mailing list: people who receive the PLP Insider, transition updates and call reminders."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.base import Base, enum_column, utcnow
from storage.enums import SubscriberStatus


class Subscriber(Base):
    __tablename__ = "subscribers"

    email: Mapped[str] = mapped_column(sa.String(320), primary_key=True)  # lower-cased
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    organization: Mapped[str] = mapped_column(sa.String(300), default="")
    status: Mapped[SubscriberStatus] = mapped_column(enum_column(SubscriberStatus), default=SubscriberStatus.PENDING)
    source: Mapped[str] = mapped_column(sa.String(100), default="")  # "email PDU-1042", "import list.csv" ...
    confirm_token: Mapped[str | None] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.get(Subscriber, email.strip().lower())
