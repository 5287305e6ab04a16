"""The inbox pipeline: every inbound email, from any intake path, goes through ``receive``.

Steps, in order: store the raw bytes, parse, deduplicate, recognise non-requests, thread, open or update
a ticket, and queue the acknowledgement, all in one transaction. The adapters acknowledge the sender
(SMTP 250, the IMAP done-flag) only after ``receive`` returns, so a crash anywhere loses nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from storage.base import utcnow
from storage.enums import Direction, MessageClass, Source, TicketKind, TicketStatus, can_move
from storage.mailstate import is_suppressed, suppress
from storage.outbox import count_recent
from storage.tickets import Attachment, AuditEntry, Message, Ticket
from workflows.conversation import find_ticket
from workflows.nonrequest import Verdict, classify
from workflows.outgoing import Draft, queue_email
from workflows.parsing import ParsedMail, parse_message
from workflows.policy import MailboxPolicy
from workflows.reading import Reading, read

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "pdubot"
NON_REQUEST_KINDS = {
    MessageClass.AUTO_REPLY: TicketKind.AUTO_REPLY,
    MessageClass.OWN: TicketKind.AUTO_REPLY,
    MessageClass.BOUNCE: TicketKind.BOUNCE,
    MessageClass.UNREADABLE: TicketKind.UNREADABLE,
}
ACK_KIND = "ack"


@dataclass(frozen=True)
class Receipt:
    """What became of one inbound message."""

    message_pk: int
    classification: MessageClass
    ticket_number: int | None = None
    duplicate: bool = False
    new_ticket: bool = False
    acknowledged: bool = False


def receive(
    sessions: sessionmaker[Session],
    raw: bytes,
    source: Source,
    policy: MailboxPolicy,
    source_ref: str = "",
    acknowledge_host: bool = True,
) -> Receipt:
    """Keep ``raw`` and act on it. Raises only when storage itself fails, so the caller can refuse (SMTP 451).

    ``acknowledge_host`` is off for backfills, so months-old mail does not make the service write to hosts.
    """
    parsed = parse_message(raw)
    try:
        with sessions() as session:
            receipt = _process(session, parsed, raw, source, source_ref, policy, acknowledge_host)
            session.commit()
            return receipt
    except IntegrityError:
        # Another process committed the same message first: that is a duplicate, not an error.
        with sessions() as session:
            earlier = find_duplicate(session, parsed)
            if earlier is not None:
                return _duplicate_receipt(earlier)
        raise
    except (OperationalError, DBAPIError):
        raise
    except Exception as exc:
        logger.exception("intake failed for message %s; quarantining it", parsed.message_id or parsed.raw_sha256)
        with sessions() as session:
            receipt = quarantine(session, parsed, raw, source, source_ref, f"intake failed: {type(exc).__name__}: {exc}")
            session.commit()
            return receipt


def inspect(session: Session, raw: bytes, policy: MailboxPolicy) -> dict[str, Any]:
    """How intake would read ``raw``, without storing anything (``pdubot parse``)."""
    parsed = parse_message(raw)
    verdict = classify(parsed, policy.addresses)
    if verdict.classification == MessageClass.REQUEST:
        return read(session, parsed).as_json()
    kind = NON_REQUEST_KINDS[verdict.classification]
    return {"kind": kind.value, "confidence": 1.0, "host_id": None, "event_id": None, "fields": {},
            "missing": [], "flags": [], "reason": verdict.reason}


def find_duplicate(session: Session, parsed: ParsedMail) -> Message | None:
    return session.scalar(sa.select(Message).where(Message.dedupe_key == parsed.dedupe_key))


def _duplicate_receipt(earlier: Message) -> Receipt:
    number = earlier.ticket.number if earlier.ticket else None
    return Receipt(earlier.id, earlier.classification, number, duplicate=True)


def _process(
    session: Session,
    parsed: ParsedMail,
    raw: bytes,
    source: Source,
    ref: str,
    policy: MailboxPolicy,
    acknowledge_host: bool,
) -> Receipt:
    earlier = find_duplicate(session, parsed)
    if earlier is not None:
        return _duplicate_receipt(earlier)
    verdict = classify(parsed, policy.addresses)
    message = store_inbound(session, parsed, raw, source, ref, verdict)
    if verdict.classification == MessageClass.UNREADABLE:
        ticket = open_unreadable_ticket(session, message, verdict.reason)
        return Receipt(message.id, verdict.classification, ticket.number, new_ticket=True)
    if verdict.classification != MessageClass.REQUEST:
        record_non_request(session, verdict)
        return Receipt(message.id, verdict.classification)
    ticket = find_ticket(session, parsed)
    if ticket is not None:
        add_follow_up(session, ticket, message)
        return Receipt(message.id, verdict.classification, ticket.number)
    reading = read(session, parsed)
    ticket = open_ticket(session, message, reading)
    acknowledged = acknowledge_host and acknowledge(session, policy, ticket, message, reading)
    return Receipt(message.id, verdict.classification, ticket.number, new_ticket=True, acknowledged=acknowledged)


def store_inbound(
    session: Session, parsed: ParsedMail, raw: bytes, source: Source, ref: str, verdict: Verdict
) -> Message:
    message = Message(
        direction=Direction.IN,
        classification=verdict.classification,
        source=source,
        source_ref=ref[:500],
        message_id=parsed.message_id,
        dedupe_key=parsed.dedupe_key,
        in_reply_to=parsed.in_reply_to,
        references=parsed.references[-50:],
        subject=parsed.subject,
        from_addr=parsed.from_addr[:320],
        from_name=parsed.from_name[:200],
        to_addrs=parsed.to_addrs,
        date=parsed.date,
        new_text=parsed.new_text,
        full_text=parsed.full_text,
        headers=parsed.headers,
        error=verdict.reason if verdict.classification == MessageClass.UNREADABLE else "",
        raw=raw,
        raw_size=len(raw),
    )
    message.attachments = [
        Attachment(filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256)
        for a in parsed.attachments
    ]
    session.add(message)
    session.flush()
    return message


def record_non_request(session: Session, verdict: Verdict) -> None:
    """Non-requests make no ticket and get no answer; a bounce marks the failing addresses undeliverable."""
    for address in verdict.failed_addresses:
        suppress(session, address, f"bounced: {verdict.reason}")


def audit(
    session: Session,
    ticket: Ticket | None,
    action: str,
    actor: str = SYSTEM_ACTOR,
    before: dict | None = None,
    after: dict | None = None,
    detail: str = "",
) -> None:
    session.add(
        AuditEntry(
            ticket_id=ticket.id if ticket else None,
            actor=actor,
            action=action,
            before=before or {},
            after=after or {},
            detail=detail,
        )
    )


def move_ticket(session: Session, ticket: Ticket, target: TicketStatus, actor: str, detail: str = "") -> bool:
    """Move ``ticket`` to ``target`` when the transition table allows it, and audit the move."""
    if ticket.status == target or not can_move(ticket.status, target):
        return False
    before = ticket.status
    ticket.status = target
    audit(session, ticket, "status", actor, {"status": before.value}, {"status": target.value}, detail)
    return True


def open_ticket(session: Session, message: Message, reading: Reading) -> Ticket:
    ticket = Ticket(
        kind=reading.kind,
        status=reading.status,
        host_id=reading.host_id,
        event_id=reading.event_id,
        requester=message.from_addr,
        requester_name=message.from_name,
        subject=message.subject,
        confidence=reading.confidence,
        fields=reading.fields,
        missing=reading.missing,
        flags=reading.flags,
    )
    session.add(ticket)
    message.ticket = ticket
    session.flush()
    audit(session, ticket, "created", f"host:{message.from_addr}", after=reading.as_json())
    return ticket


def open_unreadable_ticket(session: Session, message: Message, reason: str) -> Ticket:
    """A message that cannot be read is never dropped: staff get it, with its raw bytes and the reason."""
    ticket = Ticket(
        kind=TicketKind.UNREADABLE,
        status=TicketStatus.OPEN,
        requester=message.from_addr,
        requester_name=message.from_name,
        subject=message.subject,
        reason=reason,
    )
    session.add(ticket)
    message.ticket = ticket
    session.flush()
    audit(session, ticket, "created", SYSTEM_ACTOR, detail=reason)
    return ticket


def quarantine(
    session: Session, parsed: ParsedMail, raw: bytes, source: Source, ref: str, reason: str
) -> Receipt:
    """Keep a message that broke intake as an unreadable ticket, so a bug never loses mail."""
    earlier = find_duplicate(session, parsed)
    if earlier is not None:
        return _duplicate_receipt(earlier)
    verdict = Verdict(MessageClass.UNREADABLE, reason)
    message = store_inbound(session, parsed, raw, source, ref, verdict)
    ticket = open_unreadable_ticket(session, message, reason)
    return Receipt(message.id, MessageClass.UNREADABLE, ticket.number, new_ticket=True)


def add_follow_up(session: Session, ticket: Ticket, message: Message) -> None:
    """A host's reply joins its ticket; a ticket that waited on the host goes back in front of staff."""
    message.ticket = ticket
    audit(session, ticket, "message", f"host:{message.from_addr}", detail=f"message {message.message_id}")
    if ticket.status in (TicketStatus.NEEDS_INFO, TicketStatus.WAITING_ON_HOST, TicketStatus.ANSWERED):
        move_ticket(session, ticket, TicketStatus.OPEN, SYSTEM_ACTOR, "the host wrote again")


def may_acknowledge(session: Session, policy: MailboxPolicy, address: str) -> bool:
    """Never answer the mailbox itself, an undeliverable address, or a sender already answered often this hour."""
    if not address or address in policy.addresses or is_suppressed(session, address):
        return False
    since = utcnow() - dt.timedelta(hours=1)
    return count_recent(session, address, ACK_KIND, since) < policy.ack_limit_per_hour


def acknowledge(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> bool:
    if not may_acknowledge(session, policy, message.from_addr):
        audit(session, ticket, "ack_skipped", detail=f"no acknowledgement to {message.from_addr or 'no sender'}")
        return False
    draft = Draft(
        to=message.from_addr,
        subject=message.subject,
        template="ack",
        context={
            "name": message.from_name,
            "understood": reading.understood,
            "missing": reading.missing,
            "next_step": reading.next_step,
        },
        kind=ACK_KIND,
        parent=message,
        auto_submitted="auto-replied",
        dedupe_key=f"ack:{message.id}",
    )
    queue_email(session, policy, draft, ticket)
    return True
