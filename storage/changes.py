"""The change log: every registry change staff approved, which staff then carry over into PDUPS by hand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow


class ChangeRecord(Base):
    __tablename__ = "change_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"), index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    entity: Mapped[str] = mapped_column(sa.String(32))  # host, user, event, subscriber
    entity_id: Mapped[str] = mapped_column(sa.String(320))
    action: Mapped[str] = mapped_column(sa.String(64))  # update, cancel, add, deactivate, count
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[str] = mapped_column(sa.Text, default="")
