"""What each kind of request does: immediate answers, confirmations, approval, rejection and undo."""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storage.changes import ChangeRecord
from storage.enums import Channel, SubscriberStatus, TicketKind, TicketStatus
from storage.mailing import Subscriber
from storage.outbox import OutboxItem
from storage.registry import Event, User
from storage.tickets import Ticket
from tests.factories import MailFactory, add_user, seed_registry
from workflows.decisions import Verdict, approve, reject, undo
from workflows.inbox import Receipt, receive
from workflows.matching import forget_registry_index
from workflows.policy import MailboxPolicy
from storage.enums import Source

POLICY = MailboxPolicy()
TODAY = dt.date.today()
CONTACT = "Jane Doe <jdoe@gfps.k12.mt.us>"
USER = "Bob Smith <bsmith@gfps.k12.mt.us>"
STRANGER = "Pat Jones <pat.jones.mt@gmail.com>"


@pytest.fixture
def registry(sessions: sessionmaker[Session]) -> None:
    seed_registry(sessions)


def take(sessions: sessionmaker[Session], mail: MailFactory, body: str, sender: str = USER, **kwargs: object) -> Receipt:
    kwargs.setdefault("subject", "PDUPS")
    return receive(sessions, mail.raw(body=body, sender=sender, **kwargs), Source.FILE, POLICY)


def ticket(sessions: sessionmaker[Session], number: int) -> Ticket:
    with sessions() as session:
        return session.get(Ticket, Ticket.id_for_number(number))


def emails(sessions: sessionmaker[Session]) -> list[email.message.EmailMessage]:
    with sessions() as session:
        bodies = session.scalars(
            sa.select(OutboxItem.body).where(OutboxItem.channel == Channel.EMAIL).order_by(OutboxItem.id)
        ).all()
    return [email.message_from_bytes(b, policy=email.policy.default) for b in bodies]


def text_of(message: email.message.EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def event(sessions: sessionmaker[Session], event_id: str = "E10001") -> Event:
    with sessions() as session:
        return session.get(Event, event_id)


def decide(sessions: sessionmaker[Session], call) -> object:
    with sessions() as session:
        result = call(session)
        session.commit()
        return result


def test_it_sends_the_reset_steps_at_once_and_reopens_when_the_host_writes_again(sessions, registry, mail):
    first = take(sessions, mail, "I can't log in to the Secure Portal, it says my password expired.")
    assert ticket(sessions, first.ticket_number).status == TicketStatus.ANSWERED
    (answer,) = emails(sessions)
    assert "OPI\\BSmith" in text_of(answer)
    assert "only when resetting" in text_of(answer)

    take(sessions, mail, "That did not work, the code never arrives.", subject=f"Re: [PDU-{first.ticket_number}]")
    assert ticket(sessions, first.ticket_number).status == TicketStatus.OPEN


def test_it_points_the_host_to_pdups_for_an_event_that_has_not_ended(sessions, registry, mail):
    receipt = take(sessions, mail, "Please change the hours of the Winter Literacy Institute to 12 hours.")
    found = ticket(sessions, receipt.ticket_number)
    assert (found.kind, found.status, found.fields["self_service"]) == (TicketKind.EVENT_EDIT, TicketStatus.ANSWERED, True)
    assert "List Events" in text_of(emails(sessions)[0])
    assert event(sessions, "E10002").hours != 12


def test_it_applies_an_approved_edit_once_and_records_it(sessions, registry, mail):
    receipt = take(sessions, mail, "The hours on Math Night Part 1 are wrong, it should be 4.5 hours. It already ended.")
    found = ticket(sessions, receipt.ticket_number)
    assert (found.kind, found.status, found.fields["changes"]) == (TicketKind.EVENT_EDIT, TicketStatus.OPEN, {"hours": 4.5})
    assert str(event(sessions).hours) == "3.50"  # nothing changes before approval

    first = decide(sessions, lambda s: approve(s, POLICY, receipt.ticket_number, "Ann (staff)"))
    second = decide(sessions, lambda s: approve(s, POLICY, receipt.ticket_number, "Ann (staff)"))

    assert (first.verdict, second.verdict) == (Verdict.DONE, Verdict.ALREADY_DECIDED)
    assert str(event(sessions).hours) == "4.50"
    with sessions() as session:
        (change,) = session.scalars(sa.select(ChangeRecord)).all()
    assert (change.before, change.after, change.actor) == ({"hours": "3.50"}, {"hours": "4.50"}, "Ann (staff)")
    approved = [m for m in emails(sessions) if "Your request PDU-" in text_of(m)]
    assert len(approved) == 1 and "4.50" in text_of(approved[0])


def test_it_applies_once_when_two_staff_approve_at_the_same_moment(sessions, registry, mail):
    receipt = take(sessions, mail, "Please correct the hours of Math Night Part 1, it should be 5 hours.")

    def click(actor: str) -> Verdict:
        return decide(sessions, lambda s: approve(s, POLICY, receipt.ticket_number, actor)).verdict

    with ThreadPoolExecutor(2) as pool:
        verdicts = sorted(v.value for v in pool.map(click, ["Ann", "Bea"]))
    assert verdicts == ["already_decided", "done"]
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(ChangeRecord.id))) == 1
    assert len([m for m in emails(sessions) if "Your request PDU-" in text_of(m)]) == 1


def test_it_emails_the_reason_for_a_rejection(sessions, registry, mail):
    receipt = take(sessions, mail, "Please change the title of Math Night Part 1 to \"Family Math Night\".")
    decide(sessions, lambda s: reject(s, POLICY, receipt.ticket_number, "Ann", "Certificates were already printed."))
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.REJECTED
    assert "Certificates were already printed." in text_of(emails(sessions)[-1])
    assert event(sessions).title == "Math Night Part 1"


def test_it_records_a_count_from_the_hosts_own_user_at_once_and_can_undo_it(sessions, registry, mail):
    receipt = take(sessions, mail, "We issued 23 certificates for Math Night Part 1.")
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.APPROVED
    assert event(sessions).certificates_issued == 23
    assert "recorded 23 certificates" in text_of(emails(sessions)[0])

    decide(sessions, lambda s: undo(s, receipt.ticket_number, "Ann"))
    assert event(sessions).certificates_issued is None
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.OPEN


def test_it_sends_a_count_from_someone_not_on_file_to_staff(sessions, registry, mail):
    receipt = take(sessions, mail, "Great Falls Public Schools issued 23 certificates for Math Night Part 1.",
                   sender=STRANGER)
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.OPEN
    assert event(sessions).certificates_issued is None


def contact_reply(mail: MailFactory, confirm: email.message.EmailMessage, body: str, sender: str = CONTACT) -> bytes:
    return mail.raw(body=body, sender=sender, subject=f"Re: {confirm['Subject']}", in_reply_to=confirm["Message-ID"])


def test_it_asks_the_account_contact_before_adding_a_user_for_a_stranger(sessions, registry, mail):
    receipt = take(sessions, mail, "Please add Kevin Miller (kmiller@gfps.k12.mt.us) as a new user for "
                   "Great Falls Public Schools.", sender=STRANGER)
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.AWAITING_CONFIRMATION
    confirm = next(m for m in emails(sessions) if m["To"] == "jdoe@gfps.k12.mt.us")
    assert "Kevin Miller" in text_of(confirm)

    # A forged "yes" from someone else, threaded only by the subject tag, confirms nothing.
    receive(sessions, mail.raw(body="YES", sender=STRANGER, subject=f"Re: [PDU-{receipt.ticket_number}]"),
            Source.FILE, POLICY)
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.AWAITING_CONFIRMATION

    receive(sessions, contact_reply(mail, confirm, "Yes, please go ahead."), Source.FILE, POLICY)
    confirmed = ticket(sessions, receipt.ticket_number)
    assert confirmed.status == TicketStatus.OPEN and "confirmed_by_contact" in confirmed.flags

    decide(sessions, lambda s: approve(s, POLICY, receipt.ticket_number, "Ann"))
    with sessions() as session:
        added = session.get(User, "KMiller")
    assert (added.full_name, added.email, added.host_id) == ("Kevin Miller", "kmiller@gfps.k12.mt.us", "H0001")


def test_it_proposes_a_username_no_user_has_had_and_checks_it_again_on_approval(sessions, registry, mail):
    with sessions() as session:
        add_user(session, "KMiller", full_name="Kim Miller", email="kim@gfps.k12.mt.us", status="inactive")
        session.commit()
    forget_registry_index()
    receipt = take(sessions, mail, "Please add Kevin Miller (kmiller@gfps.k12.mt.us) as a new user for us.")
    # An inactive user's name is still taken in PDUPS.
    assert ticket(sessions, receipt.ticket_number).fields["username"] == "KMiller2"

    with sessions() as session:  # someone else gets KMiller2 before staff approve
        add_user(session, "kmiller2", full_name="Kay Miller", email="kay@gfps.k12.mt.us")
        session.commit()
    decide(sessions, lambda s: approve(s, POLICY, receipt.ticket_number, "Ann"))
    with sessions() as session:
        added = session.scalar(sa.select(User).where(User.full_name == "Kevin Miller"))
    assert added.username == "KMiller3"


def test_it_distrusts_a_sender_on_file_whose_mail_fails_dmarc(sessions, registry, mail):
    receipt = take(sessions, mail, "Please update our main phone number to (406) 555-0199.", sender=CONTACT,
                   headers={"Authentication-Results": "mx.mt.gov; dmarc=fail (p=none) header.from=gfps.k12.mt.us"})
    found = ticket(sessions, receipt.ticket_number)
    assert "dmarc_fail" in found.flags
    assert found.status == TicketStatus.AWAITING_CONFIRMATION


def test_it_subscribes_only_after_the_address_confirms(sessions, registry, mail):
    receipt = take(sessions, mail, "Please add me to the PLP Insider mailing list.", sender=STRANGER)
    with sessions() as session:
        assert session.get(Subscriber, "pat.jones.mt@gmail.com").status == SubscriberStatus.PENDING
    confirm = emails(sessions)[0]
    assert confirm["To"] == "pat.jones.mt@gmail.com"

    receive(sessions, contact_reply(mail, confirm, "YES", sender=STRANGER), Source.FILE, POLICY)
    with sessions() as session:
        assert session.get(Subscriber, "pat.jones.mt@gmail.com").status == SubscriberStatus.CONFIRMED
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.CLOSED


def test_it_unsubscribes_the_sender_at_once(sessions, registry, mail):
    with sessions() as session:
        session.add(Subscriber(email="bsmith@gfps.k12.mt.us", status=SubscriberStatus.CONFIRMED))
        session.commit()
    take(sessions, mail, "Please unsubscribe me from the PLP Insider, too many emails.")
    with sessions() as session:
        assert session.get(Subscriber, "bsmith@gfps.k12.mt.us").status == SubscriberStatus.UNSUBSCRIBED


def test_it_asks_for_the_missing_event_and_reads_the_answer(sessions, registry, mail):
    receipt = take(sessions, mail, "Please remove our cancelled event from PDUPS, it never happened.")
    waiting = ticket(sessions, receipt.ticket_number)
    assert (waiting.kind, waiting.status, waiting.missing) == (TicketKind.EVENT_CANCEL, TicketStatus.NEEDS_INFO, ["event"])
    assert "which event this is about" in text_of(emails(sessions)[0])

    ack = emails(sessions)[0]
    receive(sessions, mail.raw(body="It was Math Night Part 1.", sender=USER, in_reply_to=ack["Message-ID"],
                               subject=f"Re: {ack['Subject']}"), Source.FILE, POLICY)
    filled = ticket(sessions, receipt.ticket_number)
    assert (filled.status, filled.event_id, filled.missing) == (TicketStatus.OPEN, "E10001", [])


def test_it_files_old_mail_for_staff_without_answering(sessions, registry, mail):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    receipt = take(sessions, mail, "I can't log in to the Secure Portal.", date=old)
    assert ticket(sessions, receipt.ticket_number).status == TicketStatus.OPEN
    assert emails(sessions) == []


def test_it_exports_the_change_log_as_csv(sessions, registry, mail, env):
    receipt = take(sessions, mail, "The hours on Math Night Part 1 are wrong, it should be 4.5 hours.")
    pdubot = str(Path(sys.executable).parent / "pdubot")
    subprocess.run([pdubot, "tickets", "approve", str(receipt.ticket_number), "--by", "Ann"], env=env, check=True,
                   capture_output=True, timeout=60)
    out = subprocess.run([pdubot, "changes", "export", "--since", str(TODAY)], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["ticket"], r["entity_id"], r["field"], r["before"], r["after"], r["actor"]) for r in rows] == [
        (f"PDU-{receipt.ticket_number}", "E10001", "hours", "3.50", "4.50", "Ann")
    ]


def test_it_sends_the_regenerated_certificate_when_an_edit_touches_an_event_with_certificates(sessions, registry, mail):
    with sessions() as session:
        session.get(Event, "E10001").certificates_issued = 23
        session.commit()
    receipt = take(sessions, mail, "The instructor on Math Night Part 1 should be Ann Leigh, not Ann Lee. It already ended.")
    decide(sessions, lambda s: approve(s, POLICY, receipt.ticket_number, "Ann"))
    approved = next(m for m in emails(sessions) if "Your request PDU-" in text_of(m))
    (certificate,) = [part for part in approved.iter_attachments()]
    assert certificate.get_content_type() == "application/pdf"
    assert certificate.get_content().startswith(b"%PDF")
    assert "certificate is attached" in text_of(approved)
