"""Subscribers from a CSV file (email, name, organization), and the list as plain data."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from storage.enums import SubscriberStatus
from storage.mailing import Subscriber, find_subscriber

COLUMNS = ("email", "name", "organization")


@dataclass
class SubscriberImport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"line": n, "email": ..., "reason": ...}

    def as_json(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged, "rejected": self.rejected}


class CsvRejected(ValueError):
    """The file as a whole cannot be read as a subscriber list."""


def decode_csv(raw: bytes) -> str:
    """UTF-8 (with or without the BOM Excel writes), else Windows-1252, as Excel saves CSV on Windows."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def normalize_email(value: str) -> str:
    """The address, checked for syntax only (no DNS: imports must work offline), lower-cased."""
    return validate_email(value.strip(), check_deliverability=False).normalized.lower()


def read_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip().lower() for h in reader.fieldnames or []]
    if "email" not in headers:
        raise CsvRejected(f"the file needs an 'email' column (columns: {', '.join(COLUMNS)})")
    reader.fieldnames = headers
    return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]


def import_subscribers(session: Session, text: str, confirmed: bool, source: str) -> SubscriberImport:
    """Add or update a subscriber per row; the caller commits. ``confirmed`` marks them as having opted in."""
    result = SubscriberImport()
    seen: set[str] = set()
    for line, row in read_rows(text):
        try:
            address = normalize_email(row.get("email", ""))
        except EmailNotValidError as exc:
            result.rejected.append({"line": line, "email": row.get("email", ""), "reason": str(exc)})
            continue
        if address in seen:
            result.rejected.append({"line": line, "email": address, "reason": "listed twice in the file"})
            continue
        seen.add(address)
        upsert(session, result, address, row.get("name", ""), row.get("organization", ""), confirmed, source)
    return result


def upsert(
    session: Session, result: SubscriberImport, address: str, name: str, organization: str, confirmed: bool, source: str
) -> None:
    status = SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING
    subscriber = find_subscriber(session, address)
    if subscriber is None:
        session.add(Subscriber(email=address, name=name[:200], organization=organization[:300], status=status,
                               source=source[:100]))
        session.flush()
        result.added += 1
        return
    changes = {"name": name[:200] or subscriber.name, "organization": organization[:300] or subscriber.organization}
    # Only a pending subscriber is confirmed: people who left the list, or whose mail bounced, stay off it.
    if confirmed and subscriber.status == SubscriberStatus.PENDING:
        changes["status"] = SubscriberStatus.CONFIRMED
    changed = {k: v for k, v in changes.items() if getattr(subscriber, k) != v}
    for key, value in changed.items():
        setattr(subscriber, key, value)
    if changed:
        result.updated += 1
    else:
        result.unchanged += 1


def list_subscribers(session: Session) -> list[dict[str, str]]:
    rows = session.scalars(sa.select(Subscriber).order_by(Subscriber.email))
    return [{"email": s.email, "name": s.name, "organization": s.organization, "status": s.status.value} for s in rows]
