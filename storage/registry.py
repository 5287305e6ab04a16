"""The registry: hosts, their users and their events, mirrored from PDUPS CSV exports."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.base import Base, enum_column, utcnow
from storage.enums import EventStatus, HostKind


def location(online: bool, city: str, state: str, zip_code: str) -> str:
    """Where an event is held, as PDUPS shows it: "Online", or "Billings, MT 59101"."""
    if online:
        return "Online"
    place = ", ".join(part for part in (city, state) if part)
    return f"{place} {zip_code}".strip()


class Host(Base):
    __tablename__ = "hosts"

    host_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    kind: Mapped[HostKind] = mapped_column(enum_column(HostKind), default=HostKind.MULTIPLE)
    phone: Mapped[str] = mapped_column(sa.String(64), default="")
    address: Mapped[str] = mapped_column(sa.String(500), default="")
    contact_name: Mapped[str] = mapped_column(sa.String(200), default="")
    contact_email: Mapped[str] = mapped_column(sa.String(320), default="", index=True)
    contact_phone: Mapped[str] = mapped_column(sa.String(64), default="")
    status: Mapped[str] = mapped_column(sa.String(32), default="active")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="host")

    @property
    def domain(self) -> str:
        return self.contact_email.rpartition("@")[2].lower()


class User(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    full_name: Mapped[str] = mapped_column(sa.String(200), default="")
    email: Mapped[str] = mapped_column(sa.String(320), default="", index=True)
    phone: Mapped[str] = mapped_column(sa.String(64), default="")
    host_id: Mapped[str] = mapped_column(sa.ForeignKey("hosts.host_id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(32), default="active")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    host: Mapped[Host] = relationship(back_populates="users")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        # The nag planner asks "ended, no count, not cancelled" for every host at once.
        sa.Index(
            "ix_events_overdue",
            "end_date",
            postgresql_where=sa.text("certificates_issued IS NULL AND status = 'scheduled'"),
            sqlite_where=sa.text("certificates_issued IS NULL AND status = 'scheduled'"),
        ),
    )

    event_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.ForeignKey("hosts.host_id"), index=True)
    title: Mapped[str] = mapped_column(sa.String(500))
    instructor: Mapped[str] = mapped_column(sa.String(300), default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    categories: Mapped[list[str]] = mapped_column(default=list)
    start_date: Mapped[dt.date] = mapped_column(sa.Date)
    end_date: Mapped[dt.date] = mapped_column(sa.Date)
    online: Mapped[bool] = mapped_column(default=False)
    city: Mapped[str] = mapped_column(sa.String(120), default="")
    zip: Mapped[str] = mapped_column(sa.String(16), default="")
    state: Mapped[str] = mapped_column(sa.String(32), default="")
    hours: Mapped[Decimal] = mapped_column(sa.Numeric(7, 2), default=Decimal(0))
    certificates_issued: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[EventStatus] = mapped_column(enum_column(EventStatus), default=EventStatus.SCHEDULED)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    host: Mapped[Host] = relationship()

    @property
    def location(self) -> str:
        return location(self.online, self.city, self.state, self.zip)

    @property
    def pdus(self) -> Decimal:
        """1 hour of participation = 1 PDU; partial hours are never rounded up (OPI rule)."""
        return self.hours

    def has_ended(self, on: dt.date) -> bool:
        return self.end_date < on
