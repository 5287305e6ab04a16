"""Tickets, the messages they are made of (in both directions, raw bytes kept), attachments and the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from storage.base import Base, enum_column, utcnow
from storage.enums import Direction, MessageClass, Source, TicketKind, TicketStatus

# Ticket numbers start well above zero so that "PDU-1042" never looks like a count or an event id.
TICKET_NUMBER_OFFSET = 1000


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (sa.Index("ix_tickets_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[TicketKind] = mapped_column(enum_column(TicketKind), index=True)
    status: Mapped[TicketStatus] = mapped_column(enum_column(TicketStatus))
    host_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    event_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    requester: Mapped[str] = mapped_column(sa.String(320), default="", index=True)
    requester_name: Mapped[str] = mapped_column(sa.String(200), default="")
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    confidence: Mapped[float] = mapped_column(default=0.0)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    missing: Mapped[list[str]] = mapped_column(default=list)
    flags: Mapped[list[str]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(sa.Text, default="")  # why an unreadable ticket could not be read
    assigned_to: Mapped[str | None] = mapped_column(sa.String(64))
    decided_by: Mapped[str | None] = mapped_column(sa.String(200))
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    slack_ts: Mapped[str | None] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    messages: Mapped[list[Message]] = relationship(back_populates="ticket", order_by="Message.id")
    audit: Mapped[list[AuditEntry]] = relationship(back_populates="ticket", order_by="AuditEntry.id")

    @property
    def number(self) -> int:
        return self.id + TICKET_NUMBER_OFFSET

    @property
    def tag(self) -> str:
        return f"PDU-{self.number}"

    @staticmethod
    def id_for_number(number: int) -> int:
        return number - TICKET_NUMBER_OFFSET


class Message(Base):
    """One email, inbound or outbound. Inbound rows keep the exact bytes that arrived."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"), index=True)
    direction: Mapped[Direction] = mapped_column(enum_column(Direction))
    classification: Mapped[MessageClass] = mapped_column(enum_column(MessageClass))
    source: Mapped[Source] = mapped_column(enum_column(Source))
    source_ref: Mapped[str] = mapped_column(sa.String(500), default="")
    # Message-ID without angle brackets. Indexed because threading looks up every id we have seen or sent.
    message_id: Mapped[str] = mapped_column(sa.String(998), default="", index=True)
    # Inbound only: the Message-ID, or a content hash when there is none. Unique, so a message
    # delivered twice (SMTP retry, IMAP re-read, a second ingest) is stored once.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(998), unique=True)
    in_reply_to: Mapped[str] = mapped_column(sa.String(998), default="")
    references: Mapped[list[str]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    from_addr: Mapped[str] = mapped_column(sa.String(320), default="", index=True)
    from_name: Mapped[str] = mapped_column(sa.String(200), default="")
    to_addrs: Mapped[list[str]] = mapped_column(default=list)
    date: Mapped[dt.datetime | None] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    new_text: Mapped[str] = mapped_column(sa.Text, default="")  # what the sender wrote this time
    full_text: Mapped[str] = mapped_column(sa.Text, default="")  # with quotes and signature
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the few headers rules look at
    error: Mapped[str] = mapped_column(sa.Text, default="")
    raw_size: Mapped[int] = mapped_column(default=0)
    raw: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary))

    ticket: Mapped[Ticket | None] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", order_by="Attachment.id")


class Attachment(Base):
    """What an attachment was. Its bytes stay inside the raw message, so they are never stored twice."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(sa.ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(500), default="")
    content_type: Mapped[str] = mapped_column(sa.String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(sa.String(64))

    message: Mapped[Message] = relationship(back_populates="attachments")


class AuditEntry(Base):
    """Who did what, when, with before and after values. Rows are only ever inserted."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(64))
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    detail: Mapped[str] = mapped_column(sa.Text, default="")

    ticket: Mapped[Ticket | None] = relationship(back_populates="audit")


# The tables themselves, for the plain INSERTs and UPDATEs of intake and delivery.
TICKETS: sa.Table = Ticket.__table__  # type: ignore[assignment]
MESSAGES: sa.Table = Message.__table__  # type: ignore[assignment]
