"""Outbox delivery to a real SMTP relay (aiosmtpd) and to the local Maildir."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.delivery import EmailDeliverer, LeaseKeeper, MaildirDrop, RelayAddress, SmtpRelay, backoff
from storage.base import utcnow
from storage.enums import Channel, OutboxStatus, Source
from storage.mailstate import suppress
from storage.outbox import OutboxItem, claim_due, settle
from tests.factories import MailFactory
from tests.servers import free_port, smtp_sink, wait_until
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


def relay_at(port: int) -> SmtpRelay:
    return SmtpRelay(RelayAddress.parse(f"smtp://127.0.0.1:{port}"), timeout=5)


def rows(sessions: sessionmaker[Session]) -> list[tuple[str, OutboxStatus, int]]:
    """Each email row's recipient, status and attempts, in queue order."""
    with sessions() as session:
        return [tuple(r) for r in session.execute(
            sa.select(OutboxItem.recipient, OutboxItem.status, OutboxItem.attempts)
            .where(OutboxItem.channel == Channel.EMAIL).order_by(OutboxItem.id))]


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


def test_it_leases_only_as_many_rows_as_asked_for_the_oldest_first(sessions, mail):
    # PostgreSQL may run a "LIMIT ... SKIP LOCKED" subquery once per row it updates; the claim must not grow.
    queue_acks(sessions, mail, 12)
    lease = dt.timedelta(minutes=5)
    with sessions() as session:
        queued = list(session.scalars(sa.select(OutboxItem.id).where(OutboxItem.channel == Channel.EMAIL)
                                      .order_by(OutboxItem.id)))
        first = claim_due(session, Channel.EMAIL, 3, lease)
        second = claim_due(session, Channel.EMAIL, 3, lease)
    assert [item.id for item in first] == queued[:3]
    assert [item.id for item in second] == queued[3:6]
    assert all(item.status == OutboxStatus.SENDING and item.attempts == 1 and item.body for item in first)
    assert statuses(sessions) == [OutboxStatus.SENDING] * 6 + [OutboxStatus.PENDING] * 6


def test_it_says_whether_a_delivery_took_everything_that_was_due(sessions, mail):
    queue_acks(sessions, mail, 3)
    with smtp_sink() as (sink, port):
        async def go() -> list[tuple[int, bool]]:
            deliverer = EmailDeliverer(sessions, relay_at(port))
            try:
                return [(await deliverer.deliver_due(limit=2), deliverer.drained) for _ in range(3)]
            finally:
                await deliverer.transport.close()

        assert asyncio.run(go()) == [(2, False), (1, True), (0, True)]
        assert len(sink.received) == 3


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


def test_it_backs_off_the_relay_not_the_row_and_sends_the_backlog_in_queue_order(sessions, mail):
    queue_acks(sessions, mail, 4)
    port = free_port()

    async def go() -> list[list[str]]:
        deliverer = EmailDeliverer(sessions, relay_at(port))
        assert await deliverer.deliver_due() == 1  # the first row finds the relay down; the batch is given back
        assert await deliverer.deliver_due() == 0  # the relay is backed off: nothing is claimed
        assert {status for _, status, attempts in rows(sessions)} == {OutboxStatus.PENDING}
        assert [attempts for _, _, attempts in rows(sessions)] == [0] * 4  # the relay's failure is no row's
        for n in range(4, 6):  # more arrive during the outage
            receive(sessions, mail.raw(sender=f"Host {n} <host{n}@example.org>"), Source.FILE, MailboxPolicy())
        with smtp_sink(port) as (relay, _):
            await asyncio.sleep(deliverer.relay.wait_seconds())
            assert await deliverer.drain() == 6
            await deliverer.transport.close()
        return [rcpt for _, rcpt, _ in relay.received]

    assert asyncio.run(go()) == [[f"host{n}@example.org"] for n in range(6)]
    assert rows(sessions) == [(f"host{n}@example.org", OutboxStatus.SENT, 1) for n in range(6)]


def test_it_retries_a_message_the_relay_defers_on_its_own_and_sends_the_rest(sessions, mail):
    queue_acks(sessions, mail, 3)
    with smtp_sink() as (relay, port):
        relay.script = ["452 4.2.2 mailbox full"]
        assert deliver(sessions, port) == 3
    assert [status for _, status, _ in rows(sessions)] == [OutboxStatus.PENDING, OutboxStatus.SENT, OutboxStatus.SENT]
    assert [rcpt for _, rcpt, _ in relay.received] == [["host1@example.org"], ["host2@example.org"]]
    with sessions() as session:
        first = session.scalars(sa.select(OutboxItem).order_by(OutboxItem.id).limit(1)).one()
    assert first.next_attempt_at > utcnow() and "452" in first.last_error


def test_it_keeps_its_leases_while_working_and_a_dead_workers_rows_come_free_within_one_lease(sessions, mail):
    queue_acks(sessions, mail, 2)
    lease = dt.timedelta(seconds=0.6)

    def claim() -> list[OutboxItem]:
        with sessions() as session:
            return claim_due(session, Channel.EMAIL, 10, lease)

    async def work_for(seconds: float) -> list[OutboxItem]:
        keeper = LeaseKeeper(sessions, lease, margin=dt.timedelta(seconds=0.1))
        keeper.claimed(claim(), time.monotonic())
        stolen: list[OutboxItem] = []
        async with keeper.kept():
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                stolen += await asyncio.to_thread(claim)
                await asyncio.sleep(0.1)
            assert keeper.usable()
        return stolen

    assert asyncio.run(work_for(2.0)) == []  # three leases long: renewed, never taken over
    assert claim() == []  # the worker stopped just now: its lease still holds
    assert wait_until(lambda: len(claim()) == 2, timeout=2, interval=0.1)


def test_it_ignores_a_worker_that_records_a_row_after_another_took_it_over(sessions, mail):
    queue_acks(sessions, mail)
    with sessions() as session:
        (first,) = claim_due(session, Channel.EMAIL, 10, dt.timedelta(minutes=1))
        first_claim = first.attempts
        session.execute(sa.update(OutboxItem).values(claimed_until=utcnow() - dt.timedelta(seconds=1)))
        session.commit()
        (second,) = claim_due(session, Channel.EMAIL, 10, dt.timedelta(minutes=1))
        assert second.attempts == first_claim + 1
        assert not settle(session, first.id, OutboxStatus.FAILED, "late", attempts=first_claim)
        assert settle(session, second.id, OutboxStatus.SENT, attempts=second.attempts)
        session.commit()
    assert rows(sessions) == [("host0@example.org", OutboxStatus.SENT, 2)]


def test_it_blames_a_message_the_relay_drops_twice_and_sends_the_rest(sessions, mail):
    queue_acks(sessions, mail, 3)

    async def go(port: int) -> None:
        deliverer = EmailDeliverer(sessions, relay_at(port))
        assert await deliverer.deliver_due() == 1  # 421: the relay is backed off, the first row keeps its place
        assert rows(sessions)[0] == ("host0@example.org", OutboxStatus.PENDING, 0)
        await asyncio.sleep(deliverer.relay.wait_seconds())
        assert await deliverer.drain() == 3  # the relay answers a probe, then drops the same row again
        await deliverer.transport.close()

    with smtp_sink() as (relay, port):
        relay.script = ["421 4.3.0 closing", "421 4.3.0 closing"]
        asyncio.run(go(port))
    assert [rcpt for _, rcpt, _ in relay.received] == [["host1@example.org"], ["host2@example.org"]]
    assert [status for _, status, _ in rows(sessions)] == [OutboxStatus.PENDING, OutboxStatus.SENT, OutboxStatus.SENT]
    with sessions() as session:
        first = session.scalars(sa.select(OutboxItem).order_by(OutboxItem.id).limit(1)).one()
    assert first.next_attempt_at > utcnow() and "421" in first.last_error
