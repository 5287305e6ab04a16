"""Outbox delivery to a real SMTP relay (aiosmtpd) and to the local Maildir."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.delivery import EmailDeliverer, MaildirDrop, RelayAddress, SmtpRelay, backoff
from storage.base import utcnow
from storage.enums import Channel, OutboxStatus, Source
from storage.mailstate import suppress
from storage.outbox import OutboxItem, claim_due
from tests.factories import MailFactory
from tests.servers import free_port, smtp_sink
from workflows.inbox import receive
from workflows.policy import MailboxPolicy


def queue_acks(sessions: sessionmaker[Session], mail: MailFactory, count: int = 1) -> None:
    for n in range(count):
        receive(sessions, mail.raw(sender=f"Host {n} <host{n}@example.org>"), Source.FILE, MailboxPolicy())


def statuses(sessions: sessionmaker[Session]) -> list[OutboxStatus]:
    with sessions() as session:
        return list(session.scalars(sa.select(OutboxItem.status).where(OutboxItem.channel == Channel.EMAIL).order_by(OutboxItem.id)))


def deliver(sessions: sessionmaker[Session], port: int) -> int:
    async def go() -> int:
        deliverer = EmailDeliverer(sessions, SmtpRelay(RelayAddress.parse(f"smtp://127.0.0.1:{port}")))
        try:
            return await deliverer.deliver_due()
        finally:
            await deliverer.transport.close()

    return asyncio.run(go())


def make_due_now(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.execute(sa.update(OutboxItem).where(OutboxItem.channel == Channel.EMAIL).values(next_attempt_at=utcnow()))
        session.commit()


def test_it_delivers_over_one_reused_connection(sessions, mail):
    queue_acks(sessions, mail, 3)
    with smtp_sink() as (relay, port):
        assert deliver(sessions, port) == 3
    assert statuses(sessions) == [OutboxStatus.SENT] * 3
    assert [rcpt for _, rcpt, _ in relay.received] == [["host0@example.org"], ["host1@example.org"], ["host2@example.org"]]
    assert all(sender == "OPIPDUPS@mt.gov" for sender, _, _ in relay.received)


def test_it_retries_a_4xx_reply_later(sessions, mail):
    queue_acks(sessions, mail)
    with smtp_sink() as (relay, port):
        relay.script = ["451 4.3.0 try again later"]
        deliver(sessions, port)
        assert statuses(sessions) == [OutboxStatus.PENDING]
        assert deliver(sessions, port) == 0  # backing off: not due yet
        make_due_now(sessions)
        deliver(sessions, port)
    assert statuses(sessions) == [OutboxStatus.SENT]
    assert len(relay.received) == 1


def test_it_keeps_a_5xx_reply_as_a_visible_failure(sessions, mail):
    queue_acks(sessions, mail)
    with smtp_sink() as (relay, port):
        relay.script = ["554 5.7.1 rejected"]
        deliver(sessions, port)
        make_due_now(sessions)
        deliver(sessions, port)
    with sessions() as session:
        item = session.scalars(sa.select(OutboxItem).where(OutboxItem.channel == Channel.EMAIL)).one()
    assert item.status == OutboxStatus.FAILED
    assert "554" in item.last_error
    assert relay.received == []


def test_it_retries_when_the_relay_is_down_and_drains_once_it_is_back(sessions, mail):
    queue_acks(sessions, mail, 2)
    port = free_port()
    deliver(sessions, port)  # nothing listens there
    assert statuses(sessions) == [OutboxStatus.PENDING] * 2
    make_due_now(sessions)
    with smtp_sink(port) as (relay, _):
        deliver(sessions, port)
    assert statuses(sessions) == [OutboxStatus.SENT] * 2
    assert len(relay.received) == 2


def test_it_skips_addresses_that_bounced(sessions, mail):
    queue_acks(sessions, mail)
    with sessions() as session:
        suppress(session, "host0@example.org", "bounced")
        session.commit()
    with smtp_sink() as (relay, port):
        deliver(sessions, port)
    assert statuses(sessions) == [OutboxStatus.SKIPPED]
    assert relay.received == []


def test_it_writes_to_a_maildir_without_a_relay(sessions, mail, tmp_path: Path):
    queue_acks(sessions, mail)
    maildir = tmp_path / "outbox"
    asyncio.run(EmailDeliverer(sessions, MaildirDrop(maildir)).drain())
    messages = list(mailbox.Maildir(maildir))
    assert len(messages) == 1
    assert messages[0]["To"] == "host0@example.org"
    assert statuses(sessions) == [OutboxStatus.SENT]


def test_it_reclaims_a_row_whose_worker_died(sessions, mail):
    queue_acks(sessions, mail)
    with sessions() as session:
        assert len(claim_due(session, Channel.EMAIL, 10, dt.timedelta(minutes=5))) == 1
        assert claim_due(session, Channel.EMAIL, 10, dt.timedelta(minutes=5)) == []  # leased
        session.execute(sa.update(OutboxItem).values(claimed_until=utcnow() - dt.timedelta(seconds=1)))
        session.commit()
        assert len(claim_due(session, Channel.EMAIL, 10, dt.timedelta(minutes=5))) == 1


def test_it_never_lets_two_workers_claim_the_same_row(sessions, mail):
    queue_acks(sessions, mail, 20)
    lease = dt.timedelta(minutes=5)

    def claim_all() -> list[int]:
        with sessions() as session:
            return [item.id for item in claim_due(session, Channel.EMAIL, 20, lease)]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: claim_all(), range(4)))
    claimed = [i for ids in results for i in ids]
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 20


def test_it_parses_relay_urls_with_encoded_credentials():
    address = RelayAddress.parse("smtps://pdu%40mt.gov:p%3Ass@relay.mt.gov")
    assert (address.host, address.port, address.username, address.password) == ("relay.mt.gov", 465, "pdu@mt.gov", "p:ss")
    assert address.implicit_tls
    assert RelayAddress.parse("smtp://relay:2525").port == 2525


def test_it_backs_off_exponentially_up_to_an_hour():
    assert backoff(1) < backoff(4) < backoff(8)
    assert backoff(50) <= dt.timedelta(hours=1.2)
