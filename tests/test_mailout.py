"""The bulk sender: threads that each claim their own rows over a reused connection, and exact personal copies."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from typing import Any

import sqlalchemy as sa

from bot.mailout import bulk_transport
from storage.base import utcnow
from storage.enums import DeliveryStatus
from storage.mailouts import Delivery
from tests.servers import SinkHandler, free_port
from tests.test_newsletter import add_subscribers, approved_edition, delivered_to, jobs_for
from workflows.bulkmail import UNSUBSCRIBE_PLACEHOLDER, build_bulk_message
from workflows.policy import MailboxPolicy
from workflows.unsubscribe import make_token, unsubscribe_url


class PeerSink(SinkHandler):
    """The test relay, also noting which client connection brought each message.

    Each message takes a few milliseconds, as over a network, so one sending thread cannot take the whole
    list before the others have connected, however the machine schedules them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.peers: Counter[Any] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers[session.peer] += 1
        await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


def serve(handler: SinkHandler):  # noqa: ANN201
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller


def statuses(sessions) -> Counter[DeliveryStatus]:  # noqa: ANN001
    with sessions() as session:
        return Counter(session.scalars(sa.select(Delivery.status)))


def test_it_sends_a_long_list_once_each_over_a_few_reused_connections_in_parallel(sessions, tmp_path):
    readers = add_subscribers(sessions, 300)
    mailing_id = approved_edition(sessions)
    relay, progress = PeerSink(), []
    controller = serve(relay)
    try:
        url = f"smtp://127.0.0.1:{controller.port}"
        jobs = jobs_for(sessions, controller.port, tmp_path, lambda: bulk_transport(url, tmp_path))
        report = asyncio.run(jobs.send_one_mailing(mailing_id, lambda done, total: progress.append((done, total))))
    finally:
        controller.stop()
    assert delivered_to(relay) == Counter(readers)
    assert 2 <= len(relay.peers) <= 4  # PDUBOT_BULK_CONNECTIONS is 4: parallel, and each connection reused
    assert (report["sent"], report["remaining"]) == (300, 0)
    assert progress[0] == (0, 300) and progress[-1] == (300, 300)
    assert statuses(sessions) == {DeliveryStatus.SENT: 300}


def test_it_fails_only_the_subscriber_whose_address_needs_smtputf8_and_sends_the_rest(sessions, tmp_path):
    readers = add_subscribers(sessions, 20)
    add_subscribers(sessions, 1, prefix="josé")  # a non-ASCII local part
    mailing_id = approved_edition(sessions)
    relay = SinkHandler()
    controller = serve(relay)
    try:
        url = f"smtp://127.0.0.1:{controller.port}"
        jobs = jobs_for(sessions, controller.port, tmp_path, lambda: bulk_transport(url, tmp_path))
        report = asyncio.run(jobs.send_one_mailing(mailing_id))
    finally:
        controller.stop()
    assert delivered_to(relay) == Counter(readers)
    assert (report["sent"], report["failed"], report["remaining"]) == (20, 1, 0)
    with sessions() as session:
        failed = session.scalars(sa.select(Delivery).where(Delivery.status == DeliveryStatus.FAILED)).one()
        assert "SMTPUTF8" in failed.last_error


def test_it_stops_when_the_relay_keeps_deferring_and_gives_back_every_row_it_held(sessions, tmp_path):
    readers = add_subscribers(sessions, 200)
    mailing_id = approved_edition(sessions)
    relay = SinkHandler()
    relay.script = ["451 4.3.0 try again later"] * 1000
    controller = serve(relay)
    try:
        url = f"smtp://127.0.0.1:{controller.port}"
        jobs = jobs_for(sessions, controller.port, tmp_path, lambda: bulk_transport(url, tmp_path))
        first = asyncio.run(jobs.send_one_mailing(mailing_id))
        # 3 failures in a row per connection stop the run; each thread finishes only the message in hand.
        assert first["sent"] == 0 and 12 <= first["deferred"] <= 16 and first["remaining"] == 200
        assert statuses(sessions) == {DeliveryStatus.PENDING: 200}  # nothing left leased to a dead run

        relay.script.clear()  # the relay recovers, and the deferred rows' retry time comes
        with sessions() as session:
            session.execute(sa.update(Delivery).values(next_attempt_at=utcnow()))
            session.commit()
        second = asyncio.run(jobs_for(sessions, controller.port, tmp_path,
                                      lambda: bulk_transport(url, tmp_path)).send_one_mailing(mailing_id))
    finally:
        controller.stop()
    assert (second["sent"], second["remaining"]) == (200, 0)
    assert delivered_to(relay) == Counter(readers)


def test_it_encodes_each_copy_exactly_as_encoding_the_whole_body_would():
    policy = MailboxPolicy()
    text = ("Caf\u00e9 news " * 40 + f"\n{UNSUBSCRIBE_PLACEHOLDER}\n" + "x" * 57 + UNSUBSCRIBE_PLACEHOLDER + "\nEnd.\n")
    html = f"<p>{UNSUBSCRIBE_PLACEHOLDER}</p>" + "<p>" + "y" * 500 + f'<a href="{UNSUBSCRIBE_PLACEHOLDER}">x</a></p>'
    message = build_bulk_message(policy, "Subject", text, html, "https://pdubot.opi.mt.gov", b"secret")
    for address in ("a@b.org", "a.much.longer.address.than.the.first@example.org"):
        copy = email.message_from_bytes(message.personalize(address, "R\u00e9ader"), policy=email.policy.default)
        url = unsubscribe_url("https://pdubot.opi.mt.gov", make_token(b"secret", address))
        plain, rich = (copy.get_body(preferencelist=(kind,)).get_payload(decode=True) for kind in ("plain", "html"))
        assert plain == text.replace(UNSUBSCRIBE_PLACEHOLDER, url).replace("\n", "\r\n").encode()
        assert rich == html.replace(UNSUBSCRIBE_PLACEHOLDER, url).encode()
