"""Find the ticket an inbound message continues: by In-Reply-To and References, then by the subject tag."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.tickets import Message, Ticket
from workflows.parsing import ParsedMail

SUBJECT_TAG = re.compile(r"\[PDU-(\d{1,9})\]", re.IGNORECASE)
MAX_REFERENCES = 50  # a References header can be enormous; the newest ids are the useful ones


def find_ticket(session: Session, parsed: ParsedMail) -> Ticket | None:
    """The ticket this message replies to, or None for a new conversation (RFC 5322 section 3.6.4)."""
    ticket_id = find_ticket_id(session, parsed)
    return session.get(Ticket, ticket_id) if ticket_id is not None else None


def find_ticket_id(session: Session, parsed: ParsedMail) -> int | None:
    """``find_ticket`` without loading the ticket: what intake needs to file a follow-up."""
    by_ids = _by_message_ids(session, parsed)
    return by_ids if by_ids is not None else _by_subject_tag(session, parsed.subject)


def _by_message_ids(session: Session, parsed: ParsedMail) -> int | None:
    ids = [parsed.in_reply_to, *reversed(parsed.references[-MAX_REFERENCES:])]
    ids = [i for i in dict.fromkeys(ids) if i]
    if not ids:
        return None
    query = (
        sa.select(Message.ticket_id)
        .where(Message.message_id.in_(ids), Message.ticket_id.is_not(None))
        .order_by(Message.id.desc())
        .limit(1)
    )
    return session.scalar(query)


def _by_subject_tag(session: Session, subject: str) -> int | None:
    match = SUBJECT_TAG.search(subject)
    if not match:
        return None
    return session.scalar(sa.select(Ticket.id).where(Ticket.id == Ticket.id_for_number(int(match.group(1)))))
