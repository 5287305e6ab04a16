"""Backfill: ``take_in`` files many messages per transaction, optionally read ahead in worker processes,
and must come out exactly as if each message had been received alone."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.ingest import StoredMessage, find_messages, take_in
from storage.enums import Channel, MessageClass, Source, TicketKind, TicketStatus
from storage.outbox import OutboxItem
from storage.tickets import AuditEntry, Message, Ticket
from tests.corpora import CORPORA, load_registry
from tests.factories import MailFactory
from workflows.inbox import Receipt, receive, receive_batch, understand
from workflows.policy import MailboxPolicy

POLICY = MailboxPolicy()


def write(folder: Path, messages: list[bytes]) -> list[StoredMessage]:
    folder.mkdir(exist_ok=True)
    for n, raw in enumerate(messages):
        (folder / f"{n:04d}.eml").write_bytes(raw)
    return find_messages([folder])


def ingest(sessions: sessionmaker[Session], found: list[StoredMessage], **options: int) -> list[Receipt]:
    return list(take_in(sessions, found, POLICY, **options))


def tickets(sessions: sessionmaker[Session]) -> list[Ticket]:
    with sessions() as session:
        return list(session.scalars(sa.select(Ticket).order_by(Ticket.id)))


def actions(sessions: sessionmaker[Session], ticket_number: int) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.execute(sa.select(AuditEntry.action, AuditEntry.detail)
                               .where(AuditEntry.ticket_id == Ticket.id_for_number(ticket_number))
                               .order_by(AuditEntry.id))
        return [tuple(row) for row in rows]


def cards(sessions: sessionmaker[Session]) -> list[str | None]:
    with sessions() as session:
        return list(session.scalars(sa.select(OutboxItem.dedupe_key).where(OutboxItem.channel == Channel.SLACK)
                                    .order_by(OutboxItem.id)))


def message_id(raw: bytes) -> str:
    return understand(raw, POLICY).parsed.message_id


def test_it_threads_a_reply_to_its_original_in_the_same_batch(sessions, mail: MailFactory, tmp_path: Path):
    original = mail.message(subject="Cancelled workshop")
    reply = mail.raw(subject="Re: Cancelled workshop", body="It was the one on March 3.",
                     in_reply_to=original["Message-ID"], references=[original["Message-ID"]])
    found = write(tmp_path / "mail", [bytes(original), reply, mail.raw(subject="Another question")])

    first, second, third = ingest(sessions, found)

    assert first.new_ticket and third.new_ticket and third.ticket_number != first.ticket_number
    assert second.ticket_number == first.ticket_number and not second.new_ticket
    assert actions(sessions, first.ticket_number) == [
        ("created", ""), ("status", "filed without answering the host"), ("message", f"message {message_id(reply)}")]
    assert cards(sessions) == [f"card:{Ticket.id_for_number(n)}" for n in (first.ticket_number, third.ticket_number)]


def test_it_stores_a_message_found_twice_in_one_batch_once(sessions, mail: MailFactory, tmp_path: Path):
    raw = mail.raw()
    found = write(tmp_path / "mail", [raw, mail.raw(subject="Other"), raw])

    first, _, again = ingest(sessions, found)

    assert again.duplicate and again.message_pk == first.message_pk and again.ticket_number == first.ticket_number
    assert len(tickets(sessions)) == 2


def test_it_duplicates_nothing_when_run_again(sessions, mail: MailFactory, tmp_path: Path):
    found = write(tmp_path / "mail", [mail.raw(subject=f"Request {n}") for n in range(7)])
    first_run = ingest(sessions, found, batch_size=3)

    second_run = ingest(sessions, found, batch_size=3)

    assert all(r.duplicate for r in second_run)
    assert [r.message_pk for r in second_run] == [r.message_pk for r in first_run]
    assert len(tickets(sessions)) == 7 and len(cards(sessions)) == 7


def test_it_files_a_batch_as_receive_files_each_message(sessions, mail: MailFactory, tmp_path: Path):
    """Requests, a follow-up by subject tag, an automatic reply and an unreadable file, batched and alone."""
    batch = [mail.raw(subject="First"), mail.raw(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}),
             b"\x00\x01 not an email \xff", mail.raw(subject="Re: [PDU-1001] First", body="One more thing.")]
    found = write(tmp_path / "mail", batch)

    batched = ingest(sessions, found)
    alone = [receive(sessions, raw, Source.FILE, POLICY, acknowledge_host=False) for raw in batch]

    assert [r.duplicate for r in alone] == [True] * 4
    assert [(r.classification, r.ticket_number, r.new_ticket) for r in batched] == [
        (MessageClass.REQUEST, 1001, True), (MessageClass.AUTO_REPLY, None, False),
        (MessageClass.UNREADABLE, 1002, True), (MessageClass.REQUEST, 1001, False)]
    unreadable = tickets(sessions)[1]
    assert (unreadable.kind, unreadable.status) == (TicketKind.UNREADABLE, TicketStatus.OPEN) and unreadable.reason
    with sessions() as session:
        stored = session.scalars(sa.select(Message).order_by(Message.id).options(sa.orm.undefer(Message.raw)))
        assert [m.raw for m in stored] == batch


def test_it_quarantines_a_bad_message_without_losing_the_rest_of_its_batch(sessions, mail: MailFactory):
    good, bad, later = (understand(mail.raw(subject=s), POLICY) for s in ("Good", "Bad", "Later"))
    bad.parsed.headers = {"x-broken": object()}  # a value storage cannot hold, as a parser bug might leave

    receipts = receive_batch(sessions, [good, bad, later], Source.FILE, POLICY)

    assert [r.classification for r in receipts] == [MessageClass.REQUEST, MessageClass.UNREADABLE,
                                                    MessageClass.REQUEST]
    kept = tickets(sessions)
    assert [t.subject for t in kept] == ["Good", "", "Later"]  # what could not be stored is left in the raw bytes
    assert kept[1].kind == TicketKind.UNREADABLE and kept[1].reason.startswith("intake failed:")
    with sessions() as session:
        assert session.get(Message, receipts[1].message_pk, options=[sa.orm.undefer(Message.raw)]).raw == bad.raw


def test_it_reads_ahead_in_worker_processes_with_the_same_outcome(sessions, tmp_path: Path):
    load_registry(sessions)
    found = find_messages(sorted((CORPORA / "corpus" / "emails").glob("*.eml"))[:20])

    read_here = ingest(sessions, found, readers=0)
    here = [(t.kind, t.host_id, t.event_id, t.fields, t.missing, t.status) for t in tickets(sessions)]
    with sessions() as session:
        for model in (AuditEntry, OutboxItem, Message, Ticket):
            session.execute(sa.delete(model))
        session.commit()
    read_ahead = ingest(sessions, found, readers=1, batch_size=7)

    assert [(r.classification, r.new_ticket) for r in read_ahead] == [(r.classification, r.new_ticket) for r in read_here]
    assert [(t.kind, t.host_id, t.event_id, t.fields, t.missing, t.status) for t in tickets(sessions)] == here
