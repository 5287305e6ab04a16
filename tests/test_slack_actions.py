"""Staff decide in Slack: signed button clicks, modals and thread messages reach the same decisions as the CLI."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.slack import cards, modals
from storage.changes import ChangeRecord
from storage.enums import Channel, MailingKind, MailingStatus, TicketStatus
from storage.mailouts import find_mailing
from storage.outbox import OutboxItem
from storage.registry import Event
from storage.tickets import AuditEntry, Ticket
from tests.factories import MailFactory
from tests.servers import wait_until
from tests.slack_fake import (
    action_ids,
    block_action,
    block_text,
    forged_headers,
    interaction_body,
    message_shortcut,
    signature_headers,
)
from tests.slack_harness import ANN, BEA, EVE, USER, SlackRig, seed_registry, slack_rig, take
from workflows.newsletter import APPROVE_ACTION, prepare_edition

EDIT = "The hours on Math Night Part 1 are wrong, it should be 4.5 hours. It already ended."


@pytest.fixture
def rig(sessions: sessionmaker[Session], db_url: str) -> Iterator[SlackRig]:
    seed_registry(sessions)
    with slack_rig(sessions, db_url) as rig:
        yield rig


def ticket(sessions: sessionmaker[Session], number: int) -> Ticket:
    with sessions() as session:
        return session.get(Ticket, Ticket.id_for_number(number))


def host_emails(sessions: sessionmaker[Session], kind: str) -> list[email.message.EmailMessage]:
    with sessions() as session:
        bodies = session.scalars(sa.select(OutboxItem.body).where(
            OutboxItem.channel == Channel.EMAIL, OutboxItem.kind == kind).order_by(OutboxItem.id)).all()
    return [email.message_from_bytes(b, policy=email.policy.default) for b in bodies]


def changes(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count(ChangeRecord.id))) or 0)


def hours(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        return str(session.get(Event, "E10001").hours)


def edit_ticket(rig: SlackRig, mail: MailFactory) -> int:
    number = take(rig.sessions, mail.raw(body=EDIT, sender=USER, subject="Math Night hours"))
    rig.deliver()
    return number


def test_it_approves_from_the_card_and_updates_the_card_and_its_thread(rig, mail):
    number = edit_ticket(rig, mail)
    (card,) = rig.fake.cards()
    assert cards.APPROVE in action_ids(card.args["blocks"])

    assert rig.click(cards.APPROVE, number) == 200
    assert wait_until(lambda: ticket(rig.sessions, number).status == TicketStatus.APPROVED)
    rig.deliver()

    assert hours(rig.sessions) == "4.50"
    found = ticket(rig.sessions, number)
    assert found.decided_by == f"slack:{ANN} (Ann)"
    update = rig.fake.calls_to("chat.update")[-1]
    assert update.args["ts"] == card.result["ts"] == found.slack_ts
    assert action_ids(update.args["blocks"]) == []  # decided: the buttons are gone
    assert "approved by slack:U0ANN0001 (Ann)" in block_text(update.args["blocks"])
    assert "hours: 3.50 \u2192 4.50" in block_text(update.args["blocks"])
    thread = [c.args["text"] for c in rig.fake.posts() if c.args.get("thread_ts") == found.slack_ts]
    assert any(t.startswith(f"Approved by slack:{ANN} (Ann)") for t in thread)
    assert any(t.startswith("Emailed bsmith@gfps.k12.mt.us: approved") for t in thread)
    assert len(host_emails(rig.sessions, "approved")) == 1


def test_it_changes_the_registry_once_for_a_double_click(rig, mail):
    number = edit_ticket(rig, mail)
    assert rig.click(cards.APPROVE, number) == 200
    assert rig.click(cards.APPROVE, number) == 200
    assert wait_until(lambda: len(rig.fake.ephemerals()) == 1)
    assert "already approved by slack:U0ANN0001 (Ann)" in rig.fake.ephemerals()[0].args["text"]
    assert changes(rig.sessions) == 1 and len(host_emails(rig.sessions, "approved")) == 1


def test_it_changes_the_registry_once_when_two_staff_click_at_the_same_moment(rig, mail):
    number = edit_ticket(rig, mail)
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(lambda who: rig.click(cards.APPROVE, number, who), [ANN, BEA]))
    assert statuses == [200, 200]
    assert wait_until(lambda: len(rig.fake.ephemerals()) == 1)
    assert ticket(rig.sessions, number).status == TicketStatus.APPROVED
    assert changes(rig.sessions) == 1 and len(host_emails(rig.sessions, "approved")) == 1


def test_it_changes_the_registry_once_when_slack_redelivers_a_request(rig, mail):
    number = edit_ticket(rig, mail)
    assert rig.click(cards.APPROVE, number) == 200
    assert wait_until(lambda: ticket(rig.sessions, number).status == TicketStatus.APPROVED)
    assert rig.click(cards.APPROVE, number, retry=1) == 200
    assert wait_until(lambda: len(rig.fake.ephemerals()) == 1)
    assert changes(rig.sessions) == 1 and len(host_emails(rig.sessions, "approved")) == 1


def opened_view(rig: SlackRig, callback_id: str) -> dict:
    def views() -> list[dict]:
        return [c.args["view"] for c in rig.fake.calls_to("views.open") if c.args["view"]["callback_id"] == callback_id]

    assert wait_until(lambda: bool(views()))
    return views()[-1]


def test_it_applies_the_fields_staff_corrected_in_edit_and_approve(rig, mail):
    number = edit_ticket(rig, mail)
    assert rig.click(cards.EDIT_APPROVE, number) == 200
    view = opened_view(rig, modals.EDIT_APPROVE)
    prefilled = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["block_id"] != "kind"}
    assert '"hours": 4.5' in prefilled["fields"] and prefilled["event_id"] == "E10001"

    status, body = rig.submit(modals.EDIT_APPROVE, {"fields": "{not json", "event_id": "E10001", "host_id": "H0001"},
                              {"number": number, "channel": "C0STAFF01"})
    assert status == 200 and '"response_action":"errors"' in body.replace(" ", "")
    assert ticket(rig.sessions, number).status == TicketStatus.OPEN

    rig.submit(modals.EDIT_APPROVE, {"fields": '{"changes": {"hours": 6}}', "event_id": "E10001", "host_id": "H0001",
                                     "kind": {"selected_option": {"value": "event_edit"}}},
               {"number": number, "channel": "C0STAFF01"})
    assert wait_until(lambda: ticket(rig.sessions, number).status == TicketStatus.APPROVED)
    assert hours(rig.sessions) == "6.00"
    with rig.sessions() as session:
        edited = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "edited"))
    assert edited.actor == f"slack:{ANN} (Ann)" and edited.after["fields"] == {"changes": {"hours": 6}}


def test_it_emails_the_reason_staff_give_for_a_rejection(rig, mail):
    number = edit_ticket(rig, mail)
    assert rig.click(cards.REJECT, number) == 200
    view = opened_view(rig, modals.REJECT)
    rig.submit(modals.REJECT, {"reason": "Certificates were already printed."}, json.loads(view["private_metadata"]))
    assert wait_until(lambda: ticket(rig.sessions, number).status == TicketStatus.REJECTED)
    (rejection,) = host_emails(rig.sessions, "rejected")
    assert "Certificates were already printed." in rejection.get_body(("plain",)).get_content()
    assert hours(rig.sessions) == "3.50"


def test_it_asks_the_host_and_waits_for_the_answer(rig, mail):
    number = edit_ticket(rig, mail)
    rig.click(cards.ASK_HOST, number)
    view = opened_view(rig, modals.ASK_HOST)
    rig.submit(modals.ASK_HOST, {"question": "Was it 4.5 hours for everyone?"}, json.loads(view["private_metadata"]))
    assert wait_until(lambda: ticket(rig.sessions, number).status == TicketStatus.WAITING_ON_HOST)
    (question,) = host_emails(rig.sessions, "question")
    assert "Was it 4.5 hours for everyone?" in question.get_body(("plain",)).get_content()
    rig.deliver()
    thread = [c.args["text"] for c in rig.fake.posts() if c.args.get("thread_ts")]
    assert f"slack:{ANN} (Ann) asked the host; the ticket waits for their answer" in thread
    assert "Waiting for the host to answer staff" in block_text(rig.fake.calls_to("chat.update")[-1].args["blocks"])


def test_it_assigns_the_ticket_to_whoever_clicks(rig, mail):
    number = edit_ticket(rig, mail)
    rig.click(cards.ASSIGN, number, BEA)
    assert wait_until(lambda: ticket(rig.sessions, number).assigned_to == f"slack:{BEA} (Bea)")
    rig.deliver()
    assert f"assigned to slack:{BEA} (Bea)" in block_text(rig.fake.calls_to("chat.update")[-1].args["blocks"])
    assert rig.fake.calls_to("usergroups.users.list")  # Bea is staff through the user group


def test_it_undoes_a_count_recorded_automatically(rig, mail):
    number = take(rig.sessions, mail.raw(body="We issued 23 certificates for Math Night Part 1.", sender=USER,
                                         subject="Counts"))
    rig.deliver()
    (card,) = rig.fake.cards()
    assert action_ids(card.args["blocks"]) == [cards.UNDO]
    rig.click(cards.UNDO, number)
    assert wait_until(lambda: ticket(rig.sessions, number).status == TicketStatus.OPEN)
    with rig.sessions() as session:
        assert session.get(Event, "E10001").certificates_issued is None
    rig.deliver()
    assert cards.APPROVE in action_ids(rig.fake.calls_to("chat.update")[-1].args["blocks"])


def test_it_replies_to_the_host_from_a_thread_message_threaded_to_the_conversation(rig, mail):
    raw = mail.raw(body=EDIT, sender=USER, subject="Math Night hours", message_id="<host-7@gfps.k12.mt.us>")
    number = take(rig.sessions, raw)
    rig.deliver()
    card_ts = ticket(rig.sessions, number).slack_ts
    message = {"type": "message", "user": BEA, "text": "we should check", "ts": "1700009999.000100",
               "thread_ts": card_ts}
    rig.send(interaction_body(message_shortcut("ticket_reply_shortcut", message, ANN)))
    view = opened_view(rig, modals.REPLY)
    reply_text = {"text": "Thanks, we are checking with the instructor."}
    rig.submit(modals.REPLY, reply_text, json.loads(view["private_metadata"]))
    assert wait_until(lambda: len(host_emails(rig.sessions, "staff_reply")) == 1)
    (reply,) = host_emails(rig.sessions, "staff_reply")
    assert reply["In-Reply-To"] == "<host-7@gfps.k12.mt.us>"
    assert "Thanks, we are checking with the instructor." in reply.get_body(("plain",)).get_content()
    assert ticket(rig.sessions, number).status == TicketStatus.OPEN


def test_it_keeps_staff_talk_in_the_thread_as_internal_notes_once(rig, mail):
    number = edit_ticket(rig, mail)
    card_ts = ticket(rig.sessions, number).slack_ts
    said = {"type": "message", "channel": "C0STAFF01", "user": BEA, "text": "I'll call them <@U0ANN0001>",
            "ts": "1700009999.000200", "thread_ts": card_ts, "channel_type": "channel"}
    assert rig.event(said) == 200
    assert rig.event(said, retry=1) == 200  # Slack redelivers when it did not hear back in time
    rig.event({**said, "ts": "1700009999.000300", "bot_id": "BOTHER", "text": "a bot"}, event_id="Ev2")
    rig.event({**said, "ts": "1700009999.000400", "subtype": "channel_join", "text": "joined"}, event_id="Ev3")
    rig.event({**said, "ts": "1700009999.000500", "thread_ts": "1600000000.000001", "text": "elsewhere"},
              event_id="Ev4")
    rig.event({**said, "ts": "1700009999.000600", "text": "second note"}, event_id="Ev5")

    def notes() -> list[AuditEntry]:
        with rig.sessions() as session:
            query = sa.select(AuditEntry).where(AuditEntry.action == "note").order_by(AuditEntry.id)
            return list(session.scalars(query))

    assert wait_until(lambda: len(notes()) == 2)
    time.sleep(0.3)  # the ignored events have had time to be (not) kept too
    assert [(n.actor, n.detail) for n in notes()] == [
        (f"slack:{BEA} (Bea)", "I'll call them <@U0ANN0001>"), (f"slack:{BEA} (Bea)", "second note")]
    assert host_emails(rig.sessions, "staff_reply") == []  # notes never reach the host


def test_it_refuses_someone_who_is_not_staff_and_changes_nothing(rig, mail):
    number = edit_ticket(rig, mail)
    assert rig.click(cards.APPROVE, number, EVE) == 200
    assert wait_until(lambda: len(rig.fake.ephemerals()) == 1)
    refusal = rig.fake.ephemerals()[0].args
    assert refusal["user"] == EVE and "Only OPI Professional Learning staff" in refusal["text"]
    rig.submit(modals.REJECT, {"reason": "no"}, {"number": number, "channel": "C0STAFF01"}, user_id=EVE)
    assert wait_until(lambda: len(rig.fake.ephemerals()) == 2)
    assert ticket(rig.sessions, number).status == TicketStatus.OPEN
    assert changes(rig.sessions) == 0 and host_emails(rig.sessions, "rejected") == []


@pytest.mark.parametrize("how", ["forged", "stale"])
def test_it_refuses_requests_not_signed_by_slack_now(rig, mail, how):
    number = edit_ticket(rig, mail)
    body = interaction_body(block_action(cards.APPROVE, str(number), ANN))
    headers = forged_headers(body) if how == "forged" else signature_headers(body, timestamp=int(time.time()) - 301)
    status, _ = rig.send(body, headers=headers)
    assert status == 401
    time.sleep(0.2)
    assert ticket(rig.sessions, number).status == TicketStatus.OPEN and changes(rig.sessions) == 0
    assert rig.fake.ephemerals() == []


def test_it_opens_the_reply_modal_from_the_cards_button(rig, mail):
    number = edit_ticket(rig, mail)
    rig.click(cards.REPLY, number)
    view = opened_view(rig, modals.REPLY)
    assert json.loads(view["private_metadata"])["number"] == number


def test_it_schedules_an_edition_from_its_slack_preview(rig):
    with rig.sessions() as session:
        prepare_edition(session, "# Hello hosts\n\nNews for November.", "2026-11", "PLP Insider, November 2026")
        session.commit()
    rig.deliver_all()
    (preview,) = rig.fake.posts()
    assert action_ids(preview.args["blocks"]) == [APPROVE_ACTION]

    rig.send(interaction_body(block_action(APPROVE_ACTION, "2026-11", ANN)))
    view = opened_view(rig, modals.SCHEDULE_EDITION)
    send_at = 1795000000  # November 18, 2026, 4:06 a.m. in Montana
    rig.submit(modals.SCHEDULE_EDITION, {"send_at": {"type": "datetimepicker", "selected_date_time": send_at}},
               json.loads(view["private_metadata"]))

    def mailing():
        with rig.sessions() as session:
            return find_mailing(session, MailingKind.INSIDER, "2026-11")

    assert wait_until(lambda: mailing().status == MailingStatus.SCHEDULED)
    assert mailing().approved_by == f"slack:{ANN} (Ann)" and int(mailing().send_at.timestamp()) == send_at
    assert wait_until(lambda: any("is scheduled for" in c.args["text"] for c in rig.fake.ephemerals()))
