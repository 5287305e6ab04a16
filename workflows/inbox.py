"""The inbox pipeline: every inbound email, from any intake path, goes through ``receive`` or ``receive_batch``.

Steps, in order: parse and classify (``understand``, which needs no ticket and can run in another process),
then in one transaction store the raw bytes, deduplicate, thread, open or update a ticket, and queue the
acknowledgement. The adapters acknowledge the sender (SMTP 250, the IMAP done-flag) only after ``receive``
returns, so a crash anywhere loses nothing. A backfill (``pdubot ingest``) files many messages per
transaction with ``receive_batch``; it acknowledges nothing, so a crash only means running it again.

Mail filed without answering (a backfill, old mail) is written with plain INSERTs: nothing in that path reads
the rows back as objects, and the rows no later message looks up (attachments, audit entries, Slack cards)
are written together at the end (``Batch``). Mail that is answered goes through the ORM, because routing
works on ticket and message objects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from storage.base import utcnow
from storage.enums import Direction, MessageClass, Source, SubscriberStatus, TicketKind, TicketStatus
from storage.mailing import find_subscriber
from storage.mailstate import suppress
from storage.outbox import OutboxItem
from storage.tickets import MESSAGES, TICKET_NUMBER_OFFSET, TICKETS, Attachment, AuditEntry, Message, Ticket
from workflows.conversation import find_ticket, find_ticket_id
from workflows.nonrequest import Verdict, classify
from workflows.outgoing import queued_in
from workflows.parsing import AttachmentInfo, ParsedMail, parse_message
from workflows.policy import MailboxPolicy
from workflows.reading import Reading, read
from workflows.routing import route_follow_up, route_new
from workflows.staff import card_row
from workflows.ticket_actions import SYSTEM_ACTOR, ack_key, append_audit, audit_row, status_row

logger = logging.getLogger(__name__)

NON_REQUEST_KINDS = {
    MessageClass.AUTO_REPLY: TicketKind.AUTO_REPLY,
    MessageClass.OWN: TicketKind.AUTO_REPLY,
    MessageClass.BOUNCE: TicketKind.BOUNCE,
    MessageClass.UNREADABLE: TicketKind.UNREADABLE,
}
INSERT_MESSAGE = sa.insert(MESSAGES).returning(MESSAGES.c.id)
INSERT_TICKET = sa.insert(TICKETS).returning(TICKETS.c.id)
STORED_UNDER = sa.select(MESSAGES.c.dedupe_key, MESSAGES.c.id, MESSAGES.c.classification, MESSAGES.c.ticket_id).where(
    MESSAGES.c.dedupe_key.in_(sa.bindparam("keys", expanding=True)))
QUIET_FILING = "filed without answering the host"
T = TypeVar("T")

@dataclass(frozen=True)
class Receipt:
    """What became of one inbound message."""

    message_pk: int
    classification: MessageClass
    ticket_number: int | None = None
    duplicate: bool = False
    new_ticket: bool = False
    acknowledged: bool = False


@dataclass
class Arrival:
    """One message as far as it can be understood without touching tickets: parsed, classified and, when
    read ahead (``pdubot ingest`` reads in worker processes), read."""

    raw: bytes
    parsed: ParsedMail
    verdict: Verdict
    ref: str = ""
    reading: Reading | None = None


@dataclass
class Batch:
    """What one intake transaction carries from message to message: the rows nothing later reads back,
    inserted together just before it commits, and the receipts of messages already stored, by dedupe key."""

    rows: dict[sa.Table, list[dict[str, Any]]] = field(default_factory=dict)
    stored: dict[str, Receipt] = field(default_factory=dict)

    def add(self, model: type, *rows: dict[str, Any]) -> None:
        self.rows.setdefault(model.__table__, []).extend(rows)  # type: ignore[attr-defined]

    def write(self, session: Session) -> None:
        for table, rows in self.rows.items():
            if rows:
                session.connection().execute(sa.insert(table), rows)
        self.rows.clear()

    def look_up(self, session: Session, keys: set[str]) -> None:
        """The messages already stored under any of ``keys``: one query for a batch, not one per message."""
        for row in session.connection().execute(STORED_UNDER, {"keys": sorted(keys)}):
            self.stored[row.dedupe_key] = duplicate_receipt(row.id, row.classification, row.ticket_id)

    def remember(self, parsed: ParsedMail, receipt: Receipt) -> Receipt:
        """A later copy of ``parsed`` in this transaction is a duplicate of it."""
        self.stored[parsed.dedupe_key] = duplicate_receipt(receipt.message_pk, receipt.classification,
                                                           number_to_id(receipt.ticket_number))
        return receipt


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
    return receive_one(sessions, understand(raw, policy, source_ref), source, policy, acknowledge_host)


def understand(raw: bytes, policy: MailboxPolicy, ref: str = "") -> Arrival:
    """Parse and classify ``raw``. Never raises: a parser that fails leaves an unreadable message."""
    try:
        parsed = parse_message(raw)
    except Exception as exc:  # parse_message promises not to raise; if it ever does, the bytes are still kept
        logger.exception("the parser raised on a message; keeping its raw bytes")
        reason = f"the parser failed: {type(exc).__name__}: {exc}"[:4000]
        parsed = ParsedMail(raw_sha256=hashlib.sha256(raw).hexdigest(), unreadable=reason)
    verdict = classify(parsed, policy.addresses)
    parsed.message = None  # only the rules walk the parse tree; dropping it frees a large message early
    return Arrival(raw, parsed, verdict, ref[:500])


def receive_one(
    sessions: sessionmaker[Session], arrival: Arrival, source: Source, policy: MailboxPolicy, acknowledge_host: bool
) -> Receipt:
    """File one message in its own transaction; one that breaks intake is quarantined, never lost."""
    parsed = arrival.parsed
    try:
        return receive_batch(sessions, [arrival], source, policy, acknowledge_host, alone=True)[0]
    except (OperationalError, InterfaceError):
        raise  # storage is down or busy: refuse, so the sender keeps the message and retries
    except IntegrityError as exc:
        # Another process committed the same message first: that is a duplicate, not an error.
        with sessions() as session:
            earlier = find_duplicate(session, parsed)
            if earlier is not None:
                return earlier
        logger.exception("intake hit a constraint for message %s; quarantining it", parsed.dedupe_key[:80])
        reason = f"intake failed: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug or a value storage refused (DataError): the message must still be kept
        logger.exception("intake failed for message %s; quarantining it", parsed.dedupe_key[:80])
        reason = f"intake failed: {type(exc).__name__}: {exc}"
    try:
        return quarantine(sessions, parsed, arrival, source, reason)
    except (OperationalError, InterfaceError):
        raise
    except Exception:  # a value read from the message that storage refuses (DataError), or a bug in storing it
        logger.exception("the parsed message could not be stored either; keeping its raw bytes")
        bare = ParsedMail(raw_sha256=hashlib.sha256(arrival.raw).hexdigest(), unreadable=reason)
        return quarantine(sessions, bare, arrival, source, reason)


def receive_batch(
    sessions: sessionmaker[Session],
    arrivals: list[Arrival],
    source: Source,
    policy: MailboxPolicy,
    acknowledge_host: bool = False,
    alone: bool = False,
) -> list[Receipt]:
    """File ``arrivals`` in order, in one transaction: a reply threads to an original earlier in the batch,
    and a message twice in the batch is stored once. When any of them fails, the transaction is rolled back
    and each is filed alone (``receive_one``), so a bad message is quarantined without costing the others.
    ``alone`` is ``receive_one`` itself asking: the failure is then raised to it.
    """
    try:
        with sessions() as session:
            batch = Batch()
            batch.look_up(session, {arrival.parsed.dedupe_key for arrival in arrivals})
            receipts = [file_arrival(session, arrival, source, policy, acknowledge_host, batch)
                        for arrival in arrivals]
            batch.write(session)
            session.commit()
            return receipts
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        if alone:
            raise
        logger.warning("a batch of %d messages failed; filing each alone", len(arrivals), exc_info=True)
    return [receive_one(sessions, arrival, source, policy, acknowledge_host) for arrival in arrivals]


def inspect(session: Session, raw: bytes, policy: MailboxPolicy) -> dict[str, Any]:
    """How intake would read ``raw``, without storing anything (``pdubot parse``)."""
    parsed = parse_message(raw)
    verdict = classify(parsed, policy.addresses)
    if verdict.classification == MessageClass.REQUEST:
        return read(session, parsed).as_json()
    kind = NON_REQUEST_KINDS[verdict.classification]
    return {"kind": kind.value, "confidence": 1.0, "host_id": None, "event_id": None, "fields": {},
            "missing": [], "flags": [], "reason": verdict.reason}


def find_duplicate(session: Session, parsed: ParsedMail) -> Receipt | None:
    """The receipt of the message already stored under ``parsed``'s Message-ID or content hash, if any."""
    batch = Batch()
    batch.look_up(session, {parsed.dedupe_key})
    return batch.stored.get(parsed.dedupe_key)


def duplicate_receipt(message_pk: int, classification: MessageClass, ticket_id: int | None) -> Receipt:
    number = ticket_id + TICKET_NUMBER_OFFSET if ticket_id is not None else None
    return Receipt(message_pk, classification, number, duplicate=True)


def number_to_id(ticket_number: int | None) -> int | None:
    return Ticket.id_for_number(ticket_number) if ticket_number is not None else None


def file_arrival(
    session: Session,
    arrival: Arrival,
    source: Source,
    policy: MailboxPolicy,
    acknowledge_host: bool,
    batch: Batch,
) -> Receipt:
    """Everything intake does with one understood message, inside the caller's transaction."""
    parsed = arrival.parsed
    earlier = batch.stored.get(parsed.dedupe_key)
    if earlier is not None:
        return earlier
    return batch.remember(parsed, file_new(session, arrival, source, policy, acknowledge_host, batch))


def file_new(
    session: Session, arrival: Arrival, source: Source, policy: MailboxPolicy, acknowledge_host: bool, batch: Batch
) -> Receipt:
    parsed, verdict = arrival.parsed, arrival.verdict
    if verdict.classification == MessageClass.UNREADABLE:
        return file_unreadable(session, parsed, arrival, source, verdict.reason, batch)
    if verdict.classification != MessageClass.REQUEST:
        message_pk = insert_message(session, message_row(parsed, arrival, source, verdict), parsed.attachments, batch)
        record_non_request(session, verdict)
        return Receipt(message_pk, verdict.classification)
    if acknowledge_host and not is_old(parsed, policy):
        batch.write(session)  # routing reads audit entries and outbox rows back
        return answer_request(session, parsed, arrival, source, policy, verdict, batch)
    return file_quietly(session, parsed, arrival, source, verdict, batch)


def is_old(parsed: ParsedMail, policy: MailboxPolicy) -> bool:
    """Mail written days ago (a backlog found on first start, a backfill) is filed, never answered."""
    if parsed.date is None:
        return False
    return utcnow() - parsed.date > dt.timedelta(days=policy.answer_within_days)


def message_row(
    parsed: ParsedMail, arrival: Arrival, source: Source, verdict: Verdict, ticket_id: int | None = None
) -> dict[str, Any]:
    """The columns of one inbound message, with its exact bytes."""
    return {
        "ticket_id": ticket_id,
        "direction": Direction.IN,
        "classification": verdict.classification,
        "source": source,
        "source_ref": arrival.ref[:500],
        "message_id": parsed.message_id,
        "dedupe_key": parsed.dedupe_key,
        "in_reply_to": parsed.in_reply_to,
        "references": parsed.references[-50:],
        "subject": parsed.subject,
        "from_addr": parsed.from_addr[:320],
        "from_name": parsed.from_name[:200],
        "to_addrs": parsed.to_addrs,
        "date": parsed.date,
        "received_at": utcnow(),
        "new_text": parsed.new_text,
        "full_text": parsed.full_text,
        "headers": parsed.headers,
        "error": verdict.reason if verdict.classification == MessageClass.UNREADABLE else "",
        "raw": arrival.raw,
        "raw_size": len(arrival.raw),
    }


def insert_message(
    session: Session, row: dict[str, Any], attachments: list[AttachmentInfo], batch: Batch
) -> int:
    message_pk: int = session.connection().execute(INSERT_MESSAGE, row).scalar_one()
    batch.add(Attachment, *({"message_pk": message_pk, **attachment_row(a)} for a in attachments))
    return message_pk


def insert_ticket(session: Session, row: dict[str, Any]) -> int:
    ticket_id: int = session.connection().execute(INSERT_TICKET, row).scalar_one()
    return ticket_id


def attachment_row(attachment: AttachmentInfo) -> dict[str, Any]:
    return {"filename": attachment.filename, "content_type": attachment.content_type, "size": attachment.size,
            "sha256": attachment.sha256}


def ticket_row(message: dict[str, Any], kind: TicketKind, status: TicketStatus, **values: Any) -> dict[str, Any]:
    """Every column of a ticket opened by ``message`` (a row of ``message_row``) but its id: the object routing
    gets is made from it (``stored_ticket``), so nothing is left for a query to load."""
    now = utcnow()
    row = {"kind": kind, "status": status, "host_id": None, "event_id": None, "requester": message["from_addr"],
           "requester_name": message["from_name"], "subject": message["subject"], "confidence": 0.0,
           "fields": {}, "missing": [], "flags": [], "reason": "", "assigned_to": None, "decided_by": None,
           "decided_at": None, "slack_ts": None, "created_at": now, "updated_at": now}
    row.update(values)
    return row


def reading_values(reading: Reading) -> dict[str, Any]:
    """What a reading sets on the ticket it opens."""
    return {"host_id": reading.host_id, "event_id": reading.event_id, "confidence": reading.confidence,
            "fields": reading.fields, "missing": reading.missing, "flags": reading.flags}


def file_quietly(
    session: Session, parsed: ParsedMail, arrival: Arrival, source: Source, verdict: Verdict, batch: Batch
) -> Receipt:
    """A request filed for staff without answering the host: a follow-up joins its ticket, anything else
    opens one, already in the status its reading calls for, with its card queued for staff."""
    ticket_id = find_ticket_id(session, parsed)
    if ticket_id is not None:
        message = message_row(parsed, arrival, source, verdict, ticket_id)
        message_pk = insert_message(session, message, parsed.attachments, batch)
        batch.add(AuditEntry, follow_up_row(ticket_id, message))
        return Receipt(message_pk, verdict.classification, ticket_id + TICKET_NUMBER_OFFSET)
    reading = arrival.reading or read(session, parsed)
    message = message_row(parsed, arrival, source, verdict)
    ticket_id = insert_ticket(session, ticket_row(message, reading.kind, reading.status, **reading_values(reading)))
    message["ticket_id"] = ticket_id
    message_pk = insert_message(session, message, parsed.attachments, batch)
    batch.add(AuditEntry, audit_row(ticket_id, "created", f"host:{message['from_addr']}", after=reading.as_json()),
                status_row(ticket_id, TicketStatus.NEW, reading.status, SYSTEM_ACTOR, QUIET_FILING))
    batch.add(OutboxItem, card_row(ticket_id))
    return Receipt(message_pk, verdict.classification, ticket_id + TICKET_NUMBER_OFFSET, new_ticket=True)


def follow_up_row(ticket_id: int, message: dict[str, Any]) -> dict[str, Any]:
    """The audit entry of a host's message joining its ticket."""
    return audit_row(ticket_id, "message", f"host:{message['from_addr']}", detail=f"message {message['message_id']}")


def answer_request(
    session: Session, parsed: ParsedMail, arrival: Arrival, source: Source, policy: MailboxPolicy, verdict: Verdict,
    batch: Batch,
) -> Receipt:
    """A request that is answered: routing decides the answer and where the ticket goes.

    The ticket and the message are written as plain rows, as for mail filed quietly, and handed to routing as
    the objects it works on, already stored: the ORM's unit of work cost more than the INSERTs themselves.
    The thread and the reading are looked up first, so that each row is written once, complete.
    """
    row = message_row(parsed, arrival, source, verdict)
    ticket = find_ticket(session, parsed)
    if ticket is not None:
        message = stored_message(session, {**row, "ticket_id": ticket.id}, parsed.attachments, batch)
        append_audit(session, follow_up_row(ticket.id, row))
        route_follow_up(session, policy, ticket, message, parsed)
        session.flush()  # the next message in a batch looks up what this one wrote
        return Receipt(message.id, verdict.classification, ticket.number)
    reading = arrival.reading or read(session, parsed)
    ticket = stored_ticket(session, ticket_row(row, reading.kind, TicketStatus.NEW, **reading_values(reading)))
    message = stored_message(session, {**row, "ticket_id": ticket.id}, parsed.attachments, batch)
    append_audit(session, audit_row(ticket.id, "created", f"host:{message.from_addr}", after=reading.as_json()))
    route_new(session, policy, ticket, message, reading)
    return Receipt(message.id, verdict.classification, ticket.number, new_ticket=True,
                   acknowledged=was_acknowledged(session, message))


def stored_ticket(session: Session, row: dict[str, Any]) -> Ticket:
    """INSERT a ticket and give it back as an object, as if it had been read back."""
    return as_stored(session, Ticket(**row, id=insert_ticket(session, row)))


def stored_message(session: Session, row: dict[str, Any], attachments: list[AttachmentInfo], batch: Batch) -> Message:
    """INSERT an inbound message (its attachments go with the batch) and give it back as an object."""
    return as_stored(session, Message(**row, id=insert_message(session, row, attachments, batch)))


def as_stored(session: Session, instance: T) -> T:
    """``instance`` holds exactly what its row holds: make it a persistent object of ``session`` without a
    query. Any change routing makes to it is then written as an UPDATE, as for an object read back."""
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


def was_acknowledged(session: Session, message: Message) -> bool:
    """Whether routing queued an answer to ``message``. Only this transaction can have: the message is new."""
    return ack_key(message.id) in queued_in(session)


def record_non_request(session: Session, verdict: Verdict) -> None:
    """Non-requests make no ticket and get no answer; a bounce marks the failing addresses undeliverable."""
    for address in verdict.failed_addresses:
        suppress(session, address, f"bounced: {verdict.reason}")
        subscriber = find_subscriber(session, address)
        if subscriber is not None and subscriber.status != SubscriberStatus.UNSUBSCRIBED:
            subscriber.status = SubscriberStatus.BOUNCED  # hard bounces leave the mailing list (bulk-mail rules)


def file_unreadable(
    session: Session, parsed: ParsedMail, arrival: Arrival, source: Source, reason: str, batch: Batch
) -> Receipt:
    """A message that cannot be read is never dropped: staff get it, with its raw bytes and the reason."""
    message = message_row(parsed, arrival, source, Verdict(MessageClass.UNREADABLE, reason))
    ticket_id = insert_ticket(session, ticket_row(message, TicketKind.UNREADABLE, TicketStatus.OPEN, reason=reason))
    message["ticket_id"] = ticket_id
    message_pk = insert_message(session, message, parsed.attachments, batch)
    batch.add(AuditEntry, audit_row(ticket_id, "created", SYSTEM_ACTOR, detail=reason))
    batch.add(OutboxItem, card_row(ticket_id))
    return Receipt(message_pk, MessageClass.UNREADABLE, ticket_id + TICKET_NUMBER_OFFSET, new_ticket=True)


def quarantine(
    sessions: sessionmaker[Session], parsed: ParsedMail, arrival: Arrival, source: Source, reason: str
) -> Receipt:
    """Keep a message that broke intake as an unreadable ticket, in a transaction of its own."""
    with sessions() as session:
        earlier = find_duplicate(session, parsed)
        if earlier is not None:
            return earlier
        batch = Batch()
        receipt = file_unreadable(session, parsed, arrival, source, reason[:4000], batch)
        batch.write(session)
        session.commit()
        return receipt
