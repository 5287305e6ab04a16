"""SMTP intake over a real socket: aiosmtpd driven by smtplib."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.smtp_intake import MailboxHandler, start_smtp_server
from storage.enums import Channel, TicketKind
from storage.outbox import OutboxItem
from storage.tickets import Message, Ticket
from tests.factories import MAILBOX, MailFactory
from tests.servers import free_port, loop_thread, run_on
from workflows.policy import MailboxPolicy

MAX_BYTES = 200_000


@contextmanager
def smtp_serving(sessions: sessionmaker[Session]) -> Iterator[tuple[str, int]]:
    """The service's SMTP intake on a free loopback port, for the length of the block."""
    port = free_port()
    with loop_thread() as loop:
        server = run_on(loop, start_smtp_server(MailboxHandler(sessions, MailboxPolicy()), "127.0.0.1", port, MAX_BYTES))
        try:
            yield "127.0.0.1", port
        finally:
            run_on(loop, close_server(server))


async def close_server(server: asyncio.base_events.Server) -> None:
    server.close()
    await server.wait_closed()


@pytest.fixture
def smtp(sessions: sessionmaker[Session]) -> Iterator[tuple[str, int]]:
    with smtp_serving(sessions) as address:
        yield address


def send(address: tuple[str, int], raw: bytes, rcpt: str = MAILBOX) -> dict:
    with smtplib.SMTP(*address, timeout=10) as client:
        return client.sendmail("jdoe@gfps.k12.mt.us", [rcpt], raw)


def test_it_turns_an_email_into_a_ticket_and_an_acknowledgement(smtp, sessions, mail: MailFactory):
    send(smtp, mail.raw(subject="Remove our cancelled workshop"))

    with sessions() as session:
        ticket = session.scalars(sa.select(Ticket)).one()
        ack = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.EMAIL)).one()
        inbound = session.scalars(sa.select(Message).where(Message.direction == "in")).one()
        assert ticket.requester == "jdoe@gfps.k12.mt.us"
        assert inbound.raw.startswith(b"From: Jane Doe")
        assert ack.recipient == "jdoe@gfps.k12.mt.us"
        assert f"[{ticket.tag}]".encode() in ack.body
        assert f"In-Reply-To: <{inbound.message_id}>".encode() in ack.body


def test_it_accepts_the_legacy_and_misspelt_aliases(smtp, sessions, mail: MailFactory):
    send(smtp, mail.raw(to="OPIRUPS@mt.gov"), rcpt="OPIRUPS@mt.gov")
    send(smtp, mail.raw(to="OIPDUPS@mt.gov"), rcpt="oipdups@MT.gov")

    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(Ticket.id))) == 2


def test_it_refuses_other_recipients_with_550(smtp, mail: MailFactory):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp, mail.raw(), rcpt="someone@example.org")
    code, _ = refused.value.recipients["someone@example.org"]
    assert code == 550


def test_it_refuses_oversized_messages_with_552(smtp, sessions, mail: MailFactory):
    big = mail.raw(body=("x" * 79 + "\n") * (MAX_BYTES // 80 + 10))
    with pytest.raises(smtplib.SMTPSenderRefused) as declared:
        send(smtp, big)  # smtplib declares SIZE=, refused at MAIL FROM
    assert declared.value.smtp_code == 552

    with smtplib.SMTP(*smtp, timeout=10) as client:  # a client that declares nothing is refused after DATA
        client.ehlo()
        client.mail("jdoe@gfps.k12.mt.us")
        client.rcpt(MAILBOX)
        code, _ = client.data(big)
    assert code == 552
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(Message.id))) == 0


def test_it_answers_451_when_storage_fails(mail: MailFactory):
    broken = sessionmaker(sa.create_engine("sqlite:////nonexistent-folder/pdubot.db"))
    with smtp_serving(broken) as address, pytest.raises(smtplib.SMTPDataError) as refused:
        send(address, mail.raw())
    assert refused.value.smtp_code == 451


def test_it_stores_a_message_delivered_twice_once(smtp, sessions, mail: MailFactory):
    raw = mail.raw(message_id="<same-one@gfps.k12.mt.us>")
    send(smtp, raw)
    send(smtp, raw)

    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(Message.id)).where(Message.direction == "in")) == 1
        assert session.scalar(sa.select(sa.func.count(Ticket.id))) == 1
        assert session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(OutboxItem.channel == Channel.EMAIL)) == 1


def test_it_keeps_garbage_as_an_unreadable_ticket(smtp, sessions):
    garbage = b"\r\n".join(bytes((i * 7 + j) % 256 for j in range(60)).replace(b"\n", b"").replace(b"\r", b"") for i in range(40))
    send(smtp, garbage)

    with sessions() as session:
        ticket = session.scalars(sa.select(Ticket)).one()
        assert ticket.kind == TicketKind.UNREADABLE
        assert ticket.reason
        assert session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(OutboxItem.channel == Channel.EMAIL)) == 0
