"""The Slack app inside ``pdubot run``: off without a token, HTTP mode on the web server, or Socket Mode."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.runtime import Runtime
from bot.service import Part, Service
from bot.settings import Settings
from bot.slack import cards
from storage.enums import Channel, OutboxStatus, TicketStatus
from storage.outbox import OutboxItem
from storage.tickets import Ticket
from tests.servers import free_port, loop_thread, run_on, wait_until
from tests.slack_fake import block_action, fake_slack, interaction_body, post, signature_headers
from tests.slack_harness import ANN, USER, rig_settings, seed_registry, take

EDIT = "The hours on Math Night Part 1 are wrong, it should be 4.5 hours. It already ended."


@pytest.fixture
def registry(sessions: sessionmaker[Session]) -> None:
    seed_registry(sessions)


def rows(sessions: sessionmaker[Session], channel: Channel) -> list[OutboxStatus]:
    with sessions() as session:
        return list(session.scalars(sa.select(OutboxItem.status).where(OutboxItem.channel == channel)))


def status_of(sessions: sessionmaker[Session], number: int) -> TicketStatus:
    with sessions() as session:
        return session.get(Ticket, Ticket.id_for_number(number)).status


def test_it_runs_without_slack_and_keeps_the_slack_posts_waiting(sessions, registry, env, mail):
    http = f"127.0.0.1:{free_port()}"
    settings = Settings(_env_file=None, HTTP_LISTEN=http, OUTBOX_POLL_SECONDS=0.1)  # type: ignore[call-arg]
    service = Service(Runtime(settings), {Part.WEB, Part.OUTBOX, Part.SLACK})
    with loop_thread() as loop:
        run_on(loop, service.start())
        try:
            take(sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
            loop.call_soon_threadsafe(service.wake_outbox)
            assert wait_until(lambda: set(rows(sessions, Channel.EMAIL)) == {OutboxStatus.SENT})
            assert set(rows(sessions, Channel.SLACK)) == {OutboxStatus.PENDING}
            status, _ = post(f"http://{http}/slack/events", "{}", {}, "application/json")
            assert status in (404, 405)  # nothing listens for Slack
        finally:
            run_on(loop, service.shutdown())


def test_it_posts_cards_and_takes_clicks_in_http_mode(sessions, registry, env, db_url, mail):
    http = f"127.0.0.1:{free_port()}"
    with fake_slack() as fake, loop_thread() as loop:
        # A long poll interval: the card update must come from the wake-up after the click, not from polling.
        settings = rig_settings(fake, db_url, HTTP_LISTEN=http, OUTBOX_POLL_SECONDS="30")
        service = Service(Runtime(settings), {Part.WEB, Part.SLACK})
        run_on(loop, service.start())
        try:
            number = take(sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
            loop.call_soon_threadsafe(service.wake_outbox)
            assert wait_until(lambda: len(fake.cards()) == 1, timeout=5)

            body = interaction_body(block_action(cards.APPROVE, str(number), ANN))
            status, _ = post(f"http://{http}/slack/events", body, signature_headers(body),
                             "application/x-www-form-urlencoded")
            assert status == 200
            assert wait_until(lambda: len(fake.calls_to("chat.update")) == 1, timeout=5)
            assert status_of(sessions, number) == TicketStatus.APPROVED
        finally:
            run_on(loop, service.shutdown())


def test_it_takes_clicks_over_socket_mode(sessions, registry, env, db_url, mail):
    with fake_slack() as fake, loop_thread() as loop:
        settings = rig_settings(fake, db_url, SLACK_APP_TOKEN="xapp-test", OUTBOX_POLL_SECONDS="0.2")
        service = Service(Runtime(settings), {Part.SLACK})
        run_on(loop, service.start())
        try:
            number = take(sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
            assert wait_until(lambda: len(fake.cards()) == 1 and bool(fake.sockets), timeout=10)
            fake.push({"envelope_id": "env-1", "type": "interactive", "accepts_response_payload": False,
                       "payload": block_action(cards.APPROVE, str(number), ANN)})
            assert wait_until(lambda: status_of(sessions, number) == TicketStatus.APPROVED, timeout=10)
            assert any(c.args.get("envelope_id") == "env-1" for c in fake.calls_to("socket_ack"))
        finally:
            run_on(loop, service.shutdown())
