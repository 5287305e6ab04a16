"""What staff look up in Slack: App Home, ``/pdu`` and the morning digest of tickets waiting too long."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.scheduler import Jobs
from bot.slack import cards
from storage.base import utcnow
from storage.tickets import AuditEntry, Ticket
from tests.servers import wait_until
from tests.slack_fake import CHANNEL, block_text
from tests.slack_harness import ANN, EVE, STRANGER, USER, SlackRig, seed_registry, slack_rig, take
from workflows.desk import business_days_between

EDIT = "The hours on Math Night Part 1 are wrong, it should be 4.5 hours. It already ended."


@pytest.fixture
def rig(sessions: sessionmaker[Session], db_url: str) -> Iterator[SlackRig]:
    seed_registry(sessions)
    with slack_rig(sessions, db_url) as rig:
        yield rig


def open_two(rig: SlackRig, mail) -> tuple[int, int]:
    first = take(rig.sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
    second = take(rig.sessions, mail.raw(body="Can CPR training count for PDUs?", sender=STRANGER, subject="CPR"))
    return first, second


def published(rig: SlackRig, user_id: str) -> str:
    assert wait_until(lambda: any(c.args["user_id"] == user_id for c in rig.fake.calls_to("views.publish")))
    call = next(c for c in rig.fake.calls_to("views.publish") if c.args["user_id"] == user_id)
    return block_text(call.args["view"]["blocks"])


def test_it_shows_staff_their_own_tickets_first_then_by_status_and_overdue_counts_by_host(rig, mail):
    first, second = open_two(rig, mail)
    rig.click(cards.ASSIGN, second, ANN)
    assert wait_until(lambda: bool(rig.fake.calls) and ticket_of(rig, second).assigned_to is not None)

    assert rig.event({"type": "app_home_opened", "user": ANN, "channel": "D0ANN", "tab": "home"}) == 200
    home = published(rig, ANN)

    mine, rest = home.split("Open: waiting for staff")
    assert "*Assigned to you* (1)" in mine and f"PDU-{second}" in mine and f"PDU-{first}" not in mine
    assert f"PDU-{first}" in rest and "min" in rest
    assert "Great Falls Public Schools (`H0001`): 1 event, oldest ended" in rest


def ticket_of(rig: SlackRig, number: int) -> Ticket:
    with rig.sessions() as session:
        return session.get(Ticket, Ticket.id_for_number(number))


def test_it_shows_someone_not_staff_no_tickets_at_home(rig, mail):
    open_two(rig, mail)
    rig.event({"type": "app_home_opened", "user": EVE, "channel": "D0EVE", "tab": "home"})
    home = published(rig, EVE)
    assert "for OPI Professional Learning staff" in home and "PDU-" not in home


def responses(rig: SlackRig, key: str) -> list[dict]:
    assert wait_until(lambda: any(c.args["key"] == key for c in rig.fake.calls_to("response_url")))
    return [c.args for c in rig.fake.calls_to("response_url") if c.args["key"] == key]


@pytest.mark.parametrize(("query", "expected"), [
    ("PDU-1001", "*PDU-1001* \u00b7 Event edit"),
    ("1001", "*PDU-1001* \u00b7 Event edit"),
    ("great falls", "*Great Falls Public Schools* (`H0001`)"),
    ("h0001", "*Great Falls Public Schools* (`H0001`)"),
    ("math nite", "*Math Night Part 1* (`E10001`)"),
    ("E10002", "*Winter Literacy Institute* (`E10002`)"),
    ("stats", "tickets, 0 decided, median time to decision n/a"),
])
def test_it_finds_tickets_hosts_and_events_with_the_slash_command(rig, mail, query, expected):
    open_two(rig, mail)
    assert rig.command(query, ANN, key="q") == 200
    (answer,) = responses(rig, "q")
    assert answer["response_type"] == "ephemeral"
    assert expected in answer["text"] + block_text(answer.get("blocks") or [])


def test_it_gives_this_months_numbers_by_kind_and_status(rig, mail):
    first, _ = open_two(rig, mail)
    rig.click(cards.APPROVE, first, ANN)
    assert wait_until(lambda: ticket_of(rig, first).decided_at is not None)
    rig.command("stats", ANN, key="s")
    (answer,) = responses(rig, "s")
    text = block_text(answer["blocks"])
    assert "2 tickets, 1 decided" in text
    assert "\u2022 event edit: 1 (approved 1)" in text and "\u2022 eligibility question: 1 (open 1)" in text


def test_it_refuses_the_slash_command_to_someone_not_staff(rig, mail):
    open_two(rig, mail)
    rig.command("PDU-1001", EVE, key="e")
    (answer,) = responses(rig, "e")
    assert "Only OPI Professional Learning staff" in answer["text"] and "blocks" not in answer


def backdate(rig: SlackRig, number: int, days: int) -> None:
    earlier = utcnow() - dt.timedelta(days=days)
    with rig.sessions() as session:
        ticket_id = Ticket.id_for_number(number)
        session.execute(sa.update(Ticket).where(Ticket.id == ticket_id).values(created_at=earlier))
        session.execute(sa.update(AuditEntry).where(AuditEntry.ticket_id == ticket_id).values(at=earlier))
        session.commit()


def test_it_posts_a_morning_digest_of_tickets_waiting_too_long_once_a_day(rig, mail):
    old, fresh = open_two(rig, mail)
    backdate(rig, old, 8)
    jobs = Jobs(rig.settings, rig.sessions, transport_factory=lambda: None, secret=b"k")  # type: ignore[arg-type]
    today = dt.date.today()

    assert jobs.staff_digest(today) == {"tickets": 1}
    assert jobs.staff_digest(today) is None  # the job lock: one digest a day, however many schedulers
    rig.deliver_all()

    (digest,) = [c for c in rig.fake.posts() if c.args["text"].startswith("Good morning")]
    assert digest.args["channel"] == CHANNEL and "thread_ts" not in digest.args
    assert f"PDU-{old} event edit from Bob Smith: Math Night hours" in digest.args["text"]
    assert "more than 2 business days" in digest.args["text"]
    assert f"PDU-{fresh}" not in digest.args["text"]


def test_it_counts_only_business_days():
    thursday = dt.date(2026, 11, 5)
    assert business_days_between(thursday, thursday + dt.timedelta(days=5)) == 3  # Fri, Mon, Tue
    assert business_days_between(thursday + dt.timedelta(days=1), thursday + dt.timedelta(days=4)) == 1
    assert business_days_between(thursday, thursday) == 0
