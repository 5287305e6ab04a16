"""Generated documents kept for later: newsletter archive copies and monthly staff reports, as PDF bytes.

Slack posts refer to a document by id, so the Slack deliverer can upload the file when it posts.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, deferred, mapped_column

from storage.base import Base, enum_column, utcnow
from storage.enums import DocumentKind


class StoredDocument(Base):
    __tablename__ = "documents"
    __table_args__ = (sa.UniqueConstraint("kind", "key", name="uq_documents_kind_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[DocumentKind] = mapped_column(enum_column(DocumentKind))
    key: Mapped[str] = mapped_column(sa.String(100))  # the edition key, the report month
    filename: Mapped[str] = mapped_column(sa.String(200))
    content_type: Mapped[str] = mapped_column(sa.String(100), default="application/pdf")
    size: Mapped[int] = mapped_column(default=0)
    data: Mapped[bytes] = deferred(mapped_column(sa.LargeBinary))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def store_document(session: Session, kind: DocumentKind, key: str, filename: str, data: bytes) -> StoredDocument:
    """Keep ``data`` as the document ``kind``/``key``, replacing an earlier version; flushes to get the id."""
    document = session.scalar(sa.select(StoredDocument).where(StoredDocument.kind == kind, StoredDocument.key == key))
    if document is None:
        document = StoredDocument(kind=kind, key=key)
        session.add(document)
    document.filename = filename
    document.data = data
    document.size = len(data)
    document.created_at = utcnow()
    session.flush()
    return document


def file_reference(document: StoredDocument, title: str) -> dict[str, object]:
    """What a Slack outbox payload carries so the deliverer can upload the file: ``payload["files"]``."""
    return {"document_id": document.id, "filename": document.filename, "content_type": document.content_type,
            "title": title}
