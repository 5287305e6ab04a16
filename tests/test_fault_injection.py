"""Fault injection: ``pdubot run`` killed with SIGKILL while mail streams in, its relay and its database taken away.

Each test has a quick mode, which CI runs, and a full mode (set PDUBOT_FULL_FAULTS=1; marked slow). Kills
are placed by a seeded random generator, and PDUBOT_FAULT_SEED replays a run with another seed.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storage.base import utcnow
from storage.enums import Channel, Direction, OutboxStatus
from storage.outbox import OutboxItem
from storage.tickets import Message, Ticket
from tests.conftest import require
from tests.dovecot import DOVECOT, Dovecot, dovecot_server
from tests.factories import MailFactory
from tests.faults import (
    PDUBOT,
    KillPlan,
    ProxyControl,
    SenderStats,
    ServiceProcess,
    Worker,
    ack_attempts,
    explain_duplicates,
    fault_seed,
    inbound_by_message_id,
    killer,
    maildir_copies,
    port_is_closed,
    running_service,
    send_all,
    service_env,
    tcp_proxy,
)
from tests.servers import free_port, smtp_sink, wait_until
from tests.slack_fake import BOT_TOKEN, CHANNEL, SIGNING_SECRET, fake_slack
from workflows.staff import StaffPost

FULL = os.environ.get("PDUBOT_FULL_FAULTS", "") == "1"
DONE = b"$PdubotDone"

# Requests that each open a ticket and get an acknowledgement (every sender is new, so none is rate-limited).
REQUESTS = (
    ("Cancelled workshop", "Please remove our cancelled workshop from PDUPS."),
    ("Certificate count", "We issued 23 certificates for Math Night Part 1, event E10001."),
    ("Question", "Would a book study on classroom management count for PDUs? Thanks."),
    ("Change end date", "Please change the end date of our summer institute to July 30."),
    ("Add a user", "Please add Mary Jones as a user for our district."),
    ("Password", "I cannot log in to PDUPS, my password does not work."),
)


@dataclass(frozen=True)
class Scale:
    messages: int
    faults: int  # kills, failed attempts per acknowledgement, or database outages: see each test
    senders: int = 3


def scales(quick: Scale, full: Scale) -> list[object]:
    return [
        pytest.param(quick, id="quick"),
        pytest.param(full, id="full", marks=[
            pytest.mark.slow, pytest.mark.skipif(not FULL, reason="full mode: set PDUBOT_FULL_FAULTS=1")]),
    ]


@dataclass(frozen=True)
class HostMail:
    message_id: str
    mail_from: str
    raw: bytes


def host_mail(count: int, seed: int) -> list[HostMail]:
    """``count`` requests, each from its own host address and with its own Message-ID."""
    factory = MailFactory()
    run = f"{seed}-{uuid.uuid4().hex[:6]}"
    mail = []
    for n in range(count):
        subject, body = REQUESTS[n % len(REQUESTS)]
        address = f"host{n}@district{n}.k12.mt.us"
        message_id = f"fault-{run}-{n}@district{n}.k12.mt.us"
        raw = factory.raw(subject=f"{subject} ({n})", body=body, sender=f"Host {n} <{address}>",
                          message_id=f"<{message_id}>")
        mail.append(HostMail(message_id, address, raw))
    return mail


def pdubot(env: dict[str, str], *args: str) -> str:
    return subprocess.run([PDUBOT, *args], env=env, capture_output=True, text=True, timeout=120, check=True).stdout


def outbox_rows(sessions: sessionmaker[Session], status: OutboxStatus) -> int:
    with sessions() as session:
        query = sa.select(sa.func.count(OutboxItem.id)).where(
            OutboxItem.channel == Channel.EMAIL, OutboxItem.status == status)
        return int(session.scalar(query) or 0)


def let_leases_run_out(sessions: sessionmaker[Session]) -> int:
    """Stand in for the minute after which a dead worker's lease on a row expires; returns how many."""
    with sessions() as session:
        result = session.execute(
            sa.update(OutboxItem)
            .where(OutboxItem.channel == Channel.EMAIL, OutboxItem.status == OutboxStatus.SENDING)
            .values(claimed_until=utcnow() - dt.timedelta(seconds=1))
        )
        session.commit()
        return result.rowcount


def ticket_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count(Ticket.id))) or 0)


def inbound_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count(Message.id)).where(Message.direction == Direction.IN)) or 0)


def assert_stored_once_each(sessions: sessionmaker[Session], mail: list[HostMail]) -> None:
    """Every message is stored exactly once, and each has a ticket of its own."""
    stored = inbound_by_message_id(sessions)
    expected = {m.message_id for m in mail}
    assert not expected - set(stored), f"lost: {sorted(expected - set(stored))[:5]}"
    assert not set(stored) - expected, f"unexpected: {sorted(set(stored) - expected)[:5]}"
    doubled = {k: v for k, v in stored.items() if len(v) != 1}
    assert not doubled, f"stored more than once: {doubled}"
    tickets = [ids[0] for ids in stored.values()]
    assert None not in tickets
    assert len(set(tickets)) == len(mail) == ticket_count(sessions), "a ticket was made twice or shared"


def maildir(env: dict[str, str]) -> Path:
    return Path(env["PDUBOT_VAR_DIR"]) / "outbox-maildir"


@pytest.mark.parametrize("scale", scales(quick=Scale(120, 4), full=Scale(1000, 25, senders=4)))
def test_it_loses_and_doubles_nothing_when_killed_while_mail_arrives_over_smtp(
    env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path, scale: Scale
):
    """N messages arrive over SMTP from several senders at once while ``pdubot run`` is SIGKILLed at seeded random
    points and started again. A sender retries a message until it gets 250, as a mail server would.

    Asserted, once the last run has stopped and the kills' outbox leases have run out (set in the database in
    place of waiting a minute) and ``pdubot outbox deliver`` has run:
    - every Message-ID sent is in the messages table exactly once, and nothing else is;
    - each has its own ticket, and there are exactly N tickets;
    - the outbox holds exactly one acknowledgement row per message;
    - the outbox Maildir holds at least one acknowledgement per message (by In-Reply-To), and at most two;
    - every second copy is the documented window (README, "Architecture"): the first copy was the last email
      written by a process that was then killed (the Maildir file name carries the writer's pid), it was
      written before the kill, and the row was claimed again (attempts >= 2). So there are at most as many
      second copies as kills.
    """
    seed = fault_seed(1042)
    mail = host_mail(scale.messages, seed)
    plan = KillPlan.seeded(seed, scale.messages, scale.faults)
    stats = SenderStats()
    with running_service(service_env(env), tmp_path / "service.log") as service:
        chaos = killer(service, plan, lambda: stats.accepted)
        senders = send_all(service.smtp_address, [(m.mail_from, m.raw) for m in mail], scale.senders, stats)
        for sender in senders:
            sender.join_and_check(timeout=60 + scale.messages * 0.5)
        chaos.join_and_check(timeout=60)
        assert wait_until(lambda: outbox_rows(sessions, OutboxStatus.PENDING) == 0, timeout=30), service.log()
        service.stop()
    leased_by_the_dead = let_leases_run_out(sessions)
    pdubot(env, "outbox", "deliver")

    context = (f"seed {seed}, kills {[k.pid for k in service.kills]}, {stats}, "
               f"rows leased at a kill: {leased_by_the_dead}")
    assert len(service.kills) == scale.faults, context
    assert stats.refused_connections > 0, f"no sender ever saw a kill: {context}"
    assert_stored_once_each(sessions, mail)
    attempts = ack_attempts(sessions)
    assert set(attempts) == {m.message_id for m in mail}, context
    copies = maildir_copies(maildir(env))
    per_message = Counter(c.in_reply_to for c in copies)
    assert set(per_message) == {m.message_id for m in mail}, f"an acknowledgement never went out: {context}"
    assert explain_duplicates(copies, service.kills) == [], context
    assert all(attempts[m] >= 2 for m, n in per_message.items() if n > 1), context


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    require(DOVECOT.exists(), f"Dovecot is not installed at {DOVECOT} (apt-get install dovecot-imapd)")
    with dovecot_server() as server:
        yield server


def done_flags(server: Dovecot, folder: str) -> dict[str, bool]:
    """Each message's Message-ID, and whether it carries the done flag (read without setting \\Seen)."""
    with server.client(folder) as client:
        uids = client.search(["ALL"])
        fetched = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    found = {}
    for data in fetched.values():
        header = bytes(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]).decode().split(":", 1)[1]
        found[header.strip().strip("<>")] = DONE in data[b"FLAGS"]
    return found


def append_slowly(server: Dovecot, folder: str, mail: list[HostMail], batch: int = 5, pause: float = 0.1) -> Worker:
    """The mail server delivering into the folder, a few messages at a time, while the service runs."""

    def work() -> None:
        with server.client() as client:
            for start in range(0, len(mail), batch):
                for m in mail[start:start + batch]:
                    client.append(folder, m.raw)
                time.sleep(pause)

    worker = Worker(work, "appender")
    worker.start()
    return worker


@pytest.mark.parametrize("scale", scales(quick=Scale(100, 3), full=Scale(1000, 20)))
def test_it_turns_every_imap_message_into_one_ticket_when_killed_while_reading(
    env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path, dovecot: Dovecot, scale: Scale
):
    """N messages are appended to a real Dovecot folder while ``pdubot run`` (IMAP_URL set) reads it and is
    SIGKILLed at seeded random points and started again.

    Asserted once every message carries the done flag: every Message-ID is in the messages table exactly
    once and nothing else is, each has its own ticket (N tickets), and every message in the folder is
    marked done.
    """
    seed = fault_seed(2077)
    folder = f"F{uuid.uuid4().hex[:10]}"
    with dovecot.client() as client:
        client.create_folder(folder)
    mail = host_mail(scale.messages, seed)
    plan = KillPlan.seeded(seed, scale.messages, scale.faults, max_delay=0.1)
    senv = service_env(env, IMAP_URL=dovecot.url(folder))
    with running_service(senv, tmp_path / "service.log") as service:
        chaos = killer(service, plan, lambda: inbound_count(sessions))
        append_slowly(dovecot, folder, mail).join_and_check(timeout=60 + scale.messages * 0.2)
        chaos.join_and_check(timeout=60 + scale.messages * 0.2)
        every_one_done = wait_until(lambda: all(done_flags(dovecot, folder).values()), timeout=60, interval=0.3)
        service.stop()

    context = f"seed {seed}, kills {[k.pid for k in service.kills]}"
    assert every_one_done, f"{context}\n{service.log()}"
    assert len(service.kills) == scale.faults, context
    assert set(done_flags(dovecot, folder)) == {m.message_id for m in mail}
    assert_stored_once_each(sessions, mail)


def answered_in_order(received: list[tuple[str, list[str], bytes]]) -> list[str]:
    """The Message-ID each email the relay took answers, in the order the relay took them."""
    answers = [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in received]
    return [str(a["In-Reply-To"]).strip("<>") for a in answers]


def answered_ids(sessions: sessionmaker[Session], *conditions: sa.ColumnElement[bool]) -> list[str]:
    """The Message-ID each outbound email in the outbox answers, in queue order, for rows meeting ``conditions``."""
    with sessions() as session:
        return list(session.scalars(
            sa.select(Message.in_reply_to)
            .join(OutboxItem, Message.message_id == OutboxItem.message_id)
            .where(Message.direction == Direction.OUT, *conditions)
            .order_by(OutboxItem.id)))


def acks_in_queue_order(sessions: sessionmaker[Session]) -> list[str]:
    """The Message-ID each acknowledgement answers, in the order the outbox queued them (arrival order)."""
    return answered_ids(sessions, OutboxItem.channel == Channel.EMAIL)


def email_attempts(sessions: sessionmaker[Session]) -> Counter[int]:
    with sessions() as session:
        return Counter(session.scalars(sa.select(OutboxItem.attempts).where(OutboxItem.channel == Channel.EMAIL)))


def relay_refusals(sessions: sessionmaker[Session]) -> int:
    """Rows given back with the relay's error: the outbox has found the relay down."""
    with sessions() as session:
        query = sa.select(sa.func.count(OutboxItem.id)).where(
            OutboxItem.channel == Channel.EMAIL, OutboxItem.status == OutboxStatus.PENDING,
            OutboxItem.last_error.like("relay unreachable%"))
        return int(session.scalar(query) or 0)


@pytest.mark.parametrize("scale", scales(quick=Scale(12, 3, senders=2), full=Scale(300, 40, senders=4)))
def test_it_sends_the_backlog_once_and_in_arrival_order_when_the_relay_comes_back(
    env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path, scale: Scale
):
    """The relay is down (nothing listens on its port) while N requests arrive from several senders at once, and
    stays down ``faults`` seconds more; then it listens again.

    Asserted: every acknowledgement reaches the relay exactly once, in the order the requests arrived (the order
    the outbox queued them), within a few seconds of the relay's return (the relay is backed off as a whole,
    2 s doubling); and the relay's outage is counted against no row (each was claimed once, when it was sent).
    """
    relay_port = free_port()
    mail = host_mail(scale.messages, fault_seed(3001))
    stats = SenderStats()
    senv = service_env(env, SMTP_RELAY_URL=f"smtp://127.0.0.1:{relay_port}")
    with running_service(senv, tmp_path / "service.log") as service:
        for sender in send_all(service.smtp_address, [(m.mail_from, m.raw) for m in mail], scale.senders, stats):
            sender.join_and_check(60 + scale.messages * 0.5)
        assert wait_until(lambda: relay_refusals(sessions) >= 1, timeout=15), service.log()
        time.sleep(scale.faults)  # and down a while longer
        assert port_is_closed(relay_port)
        queued = acks_in_queue_order(sessions)
        with smtp_sink(relay_port) as (relay, _):
            back = time.monotonic()
            assert wait_until(lambda: len(relay.received) >= len(mail), timeout=60), service.log()
            drained = time.monotonic() - back
            assert wait_until(lambda: outbox_rows(sessions, OutboxStatus.SENT) == len(mail), timeout=10)
            time.sleep(0.5)  # a late duplicate would land now
            answered = answered_in_order(relay.received)
        service.stop()

    assert Counter(answered) == Counter(m.message_id for m in mail), "lost or doubled"
    assert sorted(queued) == sorted(m.message_id for m in mail)
    assert answered == queued, "not in arrival order"
    assert drained < scale.faults + 10, f"the backlog took {drained:.1f} s to drain after the relay came back"
    assert email_attempts(sessions) == Counter({1: len(mail)})
    assert outbox_rows(sessions, OutboxStatus.PENDING) == outbox_rows(sessions, OutboxStatus.SENDING) == 0


def cards_in_queue_order(sessions: sessionmaker[Session]) -> list[int]:
    """The ticket number of every card the Slack outbox queued, in queue order."""
    with sessions() as session:
        ticket_ids = session.scalars(sa.select(OutboxItem.ticket_id).where(
            OutboxItem.channel == Channel.SLACK, OutboxItem.kind == StaffPost.CARD.value).order_by(OutboxItem.id))
        return [session.get(Ticket, ticket_id).number for ticket_id in ticket_ids]


def slack_unfinished(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(
            OutboxItem.channel == Channel.SLACK,
            OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))) or 0)


@pytest.mark.parametrize("scale", scales(quick=Scale(12, 2, senders=2), full=Scale(200, 4, senders=4)))
def test_it_posts_every_card_once_and_in_arrival_order_after_slack_answered_500_and_429(
    env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path, scale: Scale
):
    """While N requests arrive, Slack answers ``faults`` calls with 500 and then two with 429 and Retry-After: 2.

    Asserted: every card reaches Slack exactly once, in the order the requests arrived (the order the outbox
    queued the cards); after a 429 nothing is called before its Retry-After has passed; and nothing is left.
    """
    mail = host_mail(scale.messages, fault_seed(5001))
    with fake_slack() as fake:
        fake.fail_next(scale.faults, status=500)
        fake.rate_limit_next(2, retry_after=2)
        senv = service_env(env, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=fake.api_url, SLACK_CHANNEL=CHANNEL,
                           SLACK_SIGNING_SECRET=SIGNING_SECRET)
        with running_service(senv, tmp_path / "service.log") as service:
            for sender in send_all(service.smtp_address, [(m.mail_from, m.raw) for m in mail], scale.senders,
                                   SenderStats()):
                sender.join_and_check(60 + scale.messages * 0.5)
            assert wait_until(lambda: slack_unfinished(sessions) == 0, timeout=60 + scale.faults * 60), service.log()
            time.sleep(0.5)  # a late duplicate would land now
            service.stop()
        calls = list(fake.calls)

    queued = cards_in_queue_order(sessions)
    posted = [int(c.args["text"].split()[0].removeprefix("PDU-")) for c in fake.cards()]
    assert len(queued) >= scale.messages // 2, "most requests need staff, so most have a card"
    assert posted == queued, "lost, doubled or out of arrival order"
    refused = [n for n, c in enumerate(calls) if c.status != 200]
    assert [calls[n].status for n in refused] == [500] * scale.faults + [429, 429]
    for n in refused[-2:]:
        assert calls[n + 1].at - calls[n].at >= 1.95, "Retry-After was not honoured"


def leased_acks(sessions: sessionmaker[Session]) -> set[str]:
    """The Message-IDs whose acknowledgement is leased to a worker (status sending)."""
    return set(answered_ids(sessions, OutboxItem.status == OutboxStatus.SENDING))


def settled(sessions: sessionmaker[Session], env: dict[str, str], expected: set[str]) -> bool:
    """Nothing pending, and every acknowledgement either delivered or leased to a worker."""
    delivered = {c.in_reply_to for c in maildir_copies(maildir(env))}
    return outbox_rows(sessions, OutboxStatus.PENDING) == 0 and expected <= delivered | leased_acks(sessions)


@dataclass
class Outages:
    """What the senders saw while the database was cut off."""

    accepted: int = 0  # 250 answers while cut off: must stay 0
    refusals: int = 0  # 451 answers while cut off


def send_through_an_outage(service: ServiceProcess, proxy: ProxyControl, before: list[HostMail],
                           during: list[HostMail], stats: SenderStats, outages: Outages) -> None:
    """Send ``before`` with the database reachable, cut it off, send ``during`` until the senders have been
    refused a few times, then restore it and let them finish."""
    send_all(service.smtp_address, [(m.mail_from, m.raw) for m in before], 1, stats)[0].join_and_check(60)
    proxy.cut()
    accepted, refused = stats.accepted, stats.temporary_replies.get(451, 0)
    senders = send_all(service.smtp_address, [(m.mail_from, m.raw) for m in during], 2, stats)
    assert wait_until(lambda: stats.temporary_replies.get(451, 0) >= refused + 4, timeout=30), service.log()
    time.sleep(1.0)
    outages.accepted += stats.accepted - accepted
    outages.refusals += stats.temporary_replies.get(451, 0) - refused
    proxy.restore()
    for sender in senders:
        sender.join_and_check(timeout=60)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("scale", scales(quick=Scale(30, 1), full=Scale(450, 5)))
def test_it_answers_451_while_postgresql_is_unreachable_and_loses_nothing(
    env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path, scale: Scale
):
    """The service reaches PostgreSQL through a TCP proxy. ``faults`` times (once in quick mode) the test sends
    a batch, cuts the proxy (nothing listens, open connections are reset) just as that batch's
    acknowledgements go out, sends twice as many messages while it is cut, and restores it.

    Asserted:
    - while the database is unreachable no message is accepted, and the senders are answered 451 only;
    - afterwards every message, sent before or during an outage, is stored exactly once with its own ticket;
    - the outbox drains: once the service has stopped, any row whose claim the database took but could not
      confirm has had its lease run out (set in the database in place of waiting a minute) and ``pdubot
      outbox deliver`` has run, every message has exactly one acknowledgement in the Maildir. The worker
      lived through the outage, so what it sent but could not record then was recorded once the database
      was back, and nothing was sent again.
    """
    target = sa.make_url(env["DATABASE_URL"])
    mail = host_mail(scale.messages, fault_seed(4001))
    batch = len(mail) // scale.faults
    stats, outages = SenderStats(), Outages()
    with tcp_proxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        through_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        senv = service_env(env, DATABASE_URL=through_proxy)
        with running_service(senv, tmp_path / "service.log") as service:
            for start in range(0, batch * scale.faults, batch):
                cycle = mail[start:start + batch]
                send_through_an_outage(service, proxy, cycle[:batch // 3], cycle[batch // 3:], stats, outages)
            expected = {m.message_id for m in mail}
            assert wait_until(lambda: settled(sessions, env, expected), timeout=30), service.log()
            service.stop()
    leased_when_cut = leased_acks(sessions)
    let_leases_run_out(sessions)
    pdubot(env, "outbox", "deliver")

    assert outages.accepted == 0, "a message was answered 250 while the database was unreachable"
    assert outages.refusals >= 4 * scale.faults and set(stats.temporary_replies) == {451}, stats
    assert_stored_once_each(sessions, mail)
    answered = Counter(c.in_reply_to for c in maildir_copies(maildir(env)))
    assert set(answered) == expected, "an acknowledgement never went out"
    doubled = {m for m, n in answered.items() if n > 1}
    assert not doubled, f"sent again after the outage: {doubled}; leased when the service stopped: {leased_when_cut}"
