"""The inbox pipeline: every inbound email, from any intake path, goes through ``receive``.

Steps, in order: store the raw bytes, parse, deduplicate, recognise non-requests, thread, open or update
a ticket, and queue the acknowledgement, all in one transaction. The adapters acknowledge the sender
(SMTP 250, the IMAP done-flag) only after ``receive`` returns, so a crash anywhere loses nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from storage.base import utcnow
from storage.enums import Direction, MessageClass, Source, SubscriberStatus, TicketKind, TicketStatus
from storage.mailing import find_subscriber
from storage.mailstate import suppress
from storage.outbox import OutboxItem
from storage.tickets import Attachment, Message, Ticket
from workflows.conversation import find_ticket
from workflows.nonrequest import Verdict, classify
from workflows.parsing import ParsedMail, parse_message
from workflows.policy import MailboxPolicy
from workflows.reading import Reading, read
from workflows.routing import notify_staff_of_new, route_follow_up, route_new
from workflows.ticket_actions import SYSTEM_ACTOR, audit, move_ticket

logger = logging.getLogger(__name__)

NON_REQUEST_KINDS = {
    MessageClass.AUTO_REPLY: TicketKind.AUTO_REPLY,
    MessageClass.OWN: TicketKind.AUTO_REPLY,
    MessageClass.BOUNCE: TicketKind.BOUNCE,
    MessageClass.UNREADABLE: TicketKind.UNREADABLE,
}

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
    try:
        parsed = parse_message(raw)
    except Exception as exc:  # parse_message promises not to raise; if it ever does, the bytes are still kept
        logger.exception("the parser raised on a message; keeping its raw bytes")
        return keep_raw(sessions, raw, source, source_ref, f"the parser failed: {type(exc).__name__}: {exc}")
    try:
        with sessions() as session:
            receipt = _process(session, parsed, raw, source, source_ref, policy, acknowledge_host)
            session.commit()
            return receipt
    except (OperationalError, InterfaceError):
        raise  # storage is down or busy: refuse, so the sender keeps the message and retries
    except IntegrityError as exc:
        # Another process committed the same message first: that is a duplicate, not an error.
        with sessions() as session:
            earlier = find_duplicate(session, parsed)
            if earlier is not None:
                return _duplicate_receipt(earlier)
        logger.exception("intake hit a constraint for message %s; quarantining it", parsed.dedupe_key[:80])
        reason = f"intake failed: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug or a value storage refused (DataError): the message must still be kept
        logger.exception("intake failed for message %s; quarantining it", parsed.dedupe_key[:80])
        reason = f"intake failed: {type(exc).__name__}: {exc}"
    try:
        with sessions() as session:
            receipt = quarantine(session, parsed, raw, source, source_ref, reason)
            session.commit()
            return receipt
    except (OperationalError, InterfaceError):
        raise
    except DBAPIError:
        logger.exception("the parsed message could not be stored either; keeping its raw bytes")
        return keep_raw(sessions, raw, source, source_ref, reason)


def keep_raw(sessions: sessionmaker[Session], raw: bytes, source: Source, ref: str, reason: str) -> Receipt:
    """The last resort: the exact bytes and the reason, with nothing read from them that storage could refuse."""
    bare = ParsedMail(raw_sha256=hashlib.sha256(raw).hexdigest(), unreadable=reason)
    with sessions() as session:
        earlier = find_duplicate(session, bare)
        if earlier is not None:
            return _duplicate_receipt(earlier)
        receipt = quarantine(session, bare, raw, source, ref[:500], reason[:4000])
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
    quiet = not acknowledge_host or is_old(parsed, policy)
    ticket = find_ticket(session, parsed)
    if ticket is not None:
        add_follow_up(session, ticket, message)
        if not quiet:
            route_follow_up(session, policy, ticket, message, parsed)
        return Receipt(message.id, verdict.classification, ticket.number)
    reading = read(session, parsed)
    ticket = open_ticket(session, message, reading)
    if quiet:
        file_quietly(session, ticket, reading)
    else:
        route_new(session, policy, ticket, message, reading)
    return Receipt(message.id, verdict.classification, ticket.number, new_ticket=True,
                   acknowledged=was_acknowledged(session, message))


def is_old(parsed: ParsedMail, policy: MailboxPolicy) -> bool:
    """Mail written days ago (a backlog found on first start, a backfill) is filed, never answered."""
    if parsed.date is None:
        return False
    return utcnow() - parsed.date > dt.timedelta(days=policy.answer_within_days)


def file_quietly(session: Session, ticket: Ticket, reading: Reading) -> None:
    move_ticket(session, ticket, reading.status, SYSTEM_ACTOR, "filed without answering the host")
    notify_staff_of_new(session, ticket)


def was_acknowledged(session: Session, message: Message) -> bool:
    session.flush()
    return session.scalar(sa.select(OutboxItem.id).where(OutboxItem.dedupe_key == f"ack:{message.id}")) is not None


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
        subscriber = find_subscriber(session, address)
        if subscriber is not None and subscriber.status != SubscriberStatus.UNSUBSCRIBED:
            subscriber.status = SubscriberStatus.BOUNCED  # hard bounces leave the mailing list (bulk-mail rules)


def open_ticket(session: Session, message: Message, reading: Reading) -> Ticket:
    ticket = Ticket(
        kind=reading.kind,
        status=TicketStatus.NEW,
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
    notify_staff_of_new(session, ticket)
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
    """A host's reply joins its ticket; what it does to the ticket is decided by ``route_follow_up``."""
    message.ticket = ticket
    audit(session, ticket, "message", f"host:{message.from_addr}", detail=f"message {message.message_id}")


