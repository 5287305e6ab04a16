"""Slack posts leave through the outbox in order: cards first, their threads after, nothing lost while Slack is down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.slack.deliverer import SlackDeliverer
from storage.documents import file_reference, store_document
from storage.enums import Channel, DocumentKind, OutboxStatus
from storage.outbox import OutboxItem
from storage.tickets import Ticket
from tests.servers import free_port, run_on
from tests.slack_fake import CHANNEL, action_ids
from tests.slack_harness import STRANGER, USER, SlackRig, no_backoff, seed_registry, slack_rig, take
from workflows.staff import StaffPost, post_to_staff

EDIT = "The hours on Math Night Part 1 are wrong, it should be 4.5 hours. It already ended."


@pytest.fixture
def rig(sessions: sessionmaker[Session], db_url: str) -> Iterator[SlackRig]:
    seed_registry(sessions)
    with slack_rig(sessions, db_url) as rig:
        yield rig


def slack_rows(sessions: sessionmaker[Session]) -> list[tuple[str, OutboxStatus, str]]:
    with sessions() as session:
        rows = session.execute(sa.select(OutboxItem.kind, OutboxItem.status, OutboxItem.last_error)
                               .where(OutboxItem.channel == Channel.SLACK).order_by(OutboxItem.id)).all()
    return [tuple(r) for r in rows]


def slack_ts(sessions: sessionmaker[Session], number: int) -> str | None:
    with sessions() as session:
        return session.get(Ticket, Ticket.id_for_number(number)).slack_ts


def three_tickets_and_a_reply(rig: SlackRig, mail) -> list[int]:
    first = take(rig.sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
    take(rig.sessions, mail.raw(body="Sorry, it was 4.5 hours for day one only.", sender=USER,
                                subject=f"Re: [PDU-{first}] Math Night hours"))
    second = take(rig.sessions, mail.raw(body="Please remove our cancelled workshop.", sender=STRANGER,
                                         subject="Cancelled"))
    third = take(rig.sessions, mail.raw(body="Can CPR training count for PDUs?", sender=STRANGER, subject="CPR"))
    return [first, second, third]


def test_it_posts_every_card_once_and_in_order_after_slack_was_down_and_then_rate_limited(rig, mail):
    numbers = three_tickets_and_a_reply(rig, mail)
    rig.fake.fail_next(2, status=500)
    rig.fake.rate_limit_next(1, retry_after=1)

    rig.deliver_all()

    attempts = rig.fake.calls_to("chat.postMessage", ok_only=False)
    assert [c.status for c in attempts[:3]] == [500, 500, 429]
    assert attempts[3].at - attempts[2].at >= 0.95  # Retry-After was honoured
    cards = rig.fake.cards()
    assert [c.args["text"].split()[0] for c in cards] == [f"PDU-{n}" for n in numbers]
    posts = rig.fake.posts()
    first_card = posts.index(cards[0])
    replies = [i for i, c in enumerate(posts) if c.args.get("thread_ts") == slack_ts(rig.sessions, numbers[0])]
    assert replies and min(replies) > first_card and max(replies) < posts.index(cards[1])
    assert "wrote:" in posts[replies[0]].args["text"]
    assert {status for _, status, _ in slack_rows(rig.sessions)} == {OutboxStatus.SENT}


def test_it_keeps_cards_queued_while_slack_cannot_be_reached(rig, mail):
    number = take(rig.sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
    unreachable = AsyncWebClient(token="xoxb-test", base_url=f"http://127.0.0.1:{free_port()}/api/", retry_handlers=[])
    down = SlackDeliverer(rig.sessions, unreachable, CHANNEL, rig.settings.policy.timezone, backoff=no_backoff)

    run_on(rig.loop, down.deliver_due(limit=3))

    (card_row,) = [r for r in slack_rows(rig.sessions) if r[0] == "slack_card"]
    assert card_row[1] == OutboxStatus.PENDING and "Slack unreachable" in card_row[2]
    rig.deliver_all()
    assert [c.args["text"].split()[0] for c in rig.fake.cards()] == [f"PDU-{number}"]


def test_it_records_a_card_slack_refuses_and_goes_on_with_the_next(rig, mail):
    numbers = three_tickets_and_a_reply(rig, mail)
    rig.fake.error_next(1, "channel_not_found", methods={"chat.postMessage"})

    rig.deliver_all()

    rows = slack_rows(rig.sessions)
    assert rows[0] == ("slack_card", OutboxStatus.FAILED, "chat.postMessage: channel_not_found")
    first_thread = [r for r in rows[1:] if r[0] == "slack_thread"][0]
    assert first_thread[1] == OutboxStatus.SKIPPED
    assert [c.args["text"].split()[0] for c in rig.fake.cards()] == [f"PDU-{n}" for n in numbers[1:]]
    assert slack_ts(rig.sessions, numbers[0]) is None


def test_it_posts_a_card_before_the_thread_lines_queued_ahead_of_it(rig, mail):
    # A count from the host's own user is recorded at once: the approval's lines are queued before the card.
    number = take(rig.sessions, mail.raw(body="We issued 23 certificates for Math Night Part 1.", sender=USER,
                                         subject="Counts"))
    rig.fake.fail_next(1, status=503, methods={"chat.postMessage"})

    rig.deliver_all()

    posts = rig.fake.posts()
    assert posts[0].args["text"].startswith(f"PDU-{number}") and "thread_ts" not in posts[0].args
    assert action_ids(posts[0].args["blocks"]) == ["ticket_undo"]
    assert posts[1].args["thread_ts"] == slack_ts(rig.sessions, number)
    assert posts[1].args["text"].startswith("Approved by pdubot (automatic)")
    kinds = {(kind, status) for kind, status, _ in slack_rows(rig.sessions)}
    assert ("slack_card_update", OutboxStatus.SKIPPED) in kinds  # the card already shows the current state


def test_it_gives_a_ticket_its_card_when_the_host_writes_back_after_an_automatic_answer(rig, mail):
    number = take(rig.sessions, mail.raw(body="I can't log in to the Secure Portal, my password expired.",
                                         sender=USER, subject="Login"))
    rig.deliver_all()
    assert rig.fake.posts() == []  # answered at once: staff need not see it

    take(rig.sessions, mail.raw(body="That did not work, the code never arrives.", sender=USER,
                                subject=f"Re: [PDU-{number}] Login"))
    rig.deliver_all()

    card, line = rig.fake.posts()
    assert card.args["text"].startswith(f"PDU-{number}") and line.args["thread_ts"] == card.result["ts"]
    assert "the code never arrives" in line.args["text"]


def test_it_uploads_a_notice_file_into_its_thread_without_posting_the_notice_twice(rig):
    with rig.sessions() as session:
        document = store_document(session, DocumentKind.REPORT, "2026-10", "pdubot-report-2026-10.pdf", b"%PDF-1.4 x")
        post_to_staff(session, StaffPost.NOTICE, text="Monthly report for October <!channel>",
                      files=[file_reference(document, "pdubot report October 2026")])
        session.commit()
    rig.fake.fail_next(1, status=502, methods={"files.getUploadURLExternal"})

    rig.deliver_all()

    (notice,) = rig.fake.posts()
    assert notice.args["text"] == "Monthly report for October &lt;!channel&gt;"
    (completed,) = rig.fake.calls_to("files.completeUploadExternal")
    assert completed.args["thread_ts"] == notice.result["ts"] and completed.args["channel_id"] == "C0STAFF01"
    assert list(rig.fake.uploads.values()) == [b"%PDF-1.4 x"]


def test_it_says_whether_a_delivery_took_everything_that_was_due(rig, mail):
    # The delivery loop sleeps until a wake-up only when nothing was left due; otherwise it looks again at once.
    for n in range(3):
        take(rig.sessions, mail.raw(body="Please remove our cancelled workshop.", sender=STRANGER, subject=f"C{n}"))
    short = SlackDeliverer(rig.sessions, rig.deliverer.client, CHANNEL, rig.settings.policy.timezone, run_length=2)
    assert run_on(rig.loop, short.deliver_due(limit=2)) == 2
    assert not short.drained  # a third card was waiting behind the run
    assert run_on(rig.loop, short.deliver_due(limit=2)) == 1
    assert short.drained
    assert len(rig.fake.cards()) == 3 and {s for _, s, _ in slack_rows(rig.sessions)} == {OutboxStatus.SENT}
    assert run_on(rig.loop, short.deliver_due(limit=2)) == 0 and short.drained
