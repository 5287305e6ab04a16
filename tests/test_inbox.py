"""The inbox pipeline: threading, deduplication, non-requests and acknowledgements."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given, strategies as st
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import Channel, MessageClass, Source, SubscriberStatus, TicketStatus
from storage.mailing import Subscriber
from storage.mailstate import is_suppressed
from storage.outbox import OutboxItem
from storage.tickets import AuditEntry, Message, Ticket
from tests.factories import MAILBOX, MailFactory
from workflows.inbox import Receipt, receive
from workflows.outgoing import ONE_LINE_HEADERS, Draft, build_email
from workflows.policy import MailboxPolicy

POLICY = MailboxPolicy()


def take(sessions: sessionmaker[Session], raw: bytes) -> Receipt:
    return receive(sessions, raw, Source.FILE, POLICY)


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model)))


def emails_queued(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(OutboxItem.channel == Channel.EMAIL)))


def the_ack(sessions: sessionmaker[Session]) -> Message:
    with sessions() as session:
        return session.scalars(sa.select(Message).where(Message.direction == "out")).one()


def test_it_threads_a_reply_to_the_acknowledgement_into_the_same_ticket(sessions, mail: MailFactory):
    first = take(sessions, mail.raw(subject="Remove our workshop"))
    ack = the_ack(sessions)

    reply = take(sessions, mail.raw(subject="Re: Remove our workshop", in_reply_to=f"<{ack.message_id}>",
                                    body="It was the Oct 14 one."))

    assert reply.ticket_number == first.ticket_number
    assert not reply.new_ticket
    assert count(sessions, Ticket) == 1
    assert emails_queued(sessions) == 1  # the follow-up is not acknowledged again


def test_it_threads_by_references_when_in_reply_to_is_missing(sessions, mail: MailFactory):
    first = take(sessions, mail.raw())
    ack = the_ack(sessions)
    reply = take(sessions, mail.raw(references=["<unrelated@x.org>", f"<{ack.message_id}>"]))
    assert reply.ticket_number == first.ticket_number


def test_it_threads_by_the_ticket_tag_in_the_subject(sessions, mail: MailFactory):
    first = take(sessions, mail.raw(subject="Cancelled workshop"))
    reply = take(sessions, mail.raw(subject=f"RE: [PDU-{first.ticket_number}] Re: Cancelled workshop",
                                    sender="Other Person <other@gmail.com>"))
    assert reply.ticket_number == first.ticket_number


def test_it_sends_a_threaded_tagged_auto_replied_acknowledgement(sessions, mail: MailFactory):
    receipt = take(sessions, mail.raw(subject="Cancelled workshop", message_id="<orig-1@gfps.k12.mt.us>"))
    with sessions() as session:
        body = session.scalars(sa.select(OutboxItem.body).where(OutboxItem.channel == Channel.EMAIL)).one()
    ack = email.message_from_bytes(body, policy=email.policy.default)
    assert ack["Subject"] == f"[PDU-{receipt.ticket_number}] Re: Cancelled workshop"
    assert ack["In-Reply-To"] == "<orig-1@gfps.k12.mt.us>"
    assert "<orig-1@gfps.k12.mt.us>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Message-ID"].endswith("@mt.gov>")
    assert ack["From"].addresses[0].addr_spec == MAILBOX
    assert ack.get_body(("plain",)) is not None and ack.get_body(("html",)) is not None


def test_it_keeps_a_line_break_hidden_in_an_encoded_subject_out_of_the_acknowledgements_header(
    sessions, mail: MailFactory
):
    """An encoded word can carry CR LF; written back raw it would start a header of the host's choosing."""
    raw = mail.raw(subject="Cancelled workshop").replace(
        b"Subject: Cancelled workshop", b"Subject: =?utf-8?q?Cancelled_workshop=0D=0ABcc:_everyone@example.org?=")
    take(sessions, raw)
    with sessions() as session:
        body = session.scalars(sa.select(OutboxItem.body).where(OutboxItem.channel == Channel.EMAIL)).one()
    ack = email.message_from_bytes(body, policy=email.policy.default)
    assert ack.get_all("Bcc") is None
    assert "\n" not in ack["Subject"] and ack["Subject"].endswith("Cancelled workshop Bcc: everyone@example.org")
    header_names = [line.split(b":")[0].lower() for line in body.split(b"\n\n")[0].splitlines() if line[:1] != b" "]
    assert header_names.count(b"subject") == 1 and b"bcc" not in header_names


@pytest.mark.parametrize("subject", ["Workshop\r\nBcc: everyone@example.org", "Atelier été\nBcc: everyone@example.org"])
def test_it_writes_every_header_of_an_email_it_builds_on_one_line(subject: str):
    """Whatever reaches a draft (a subject, an extra header), a line break in it cannot add a header."""
    draft = Draft(to="jdoe@gfps.k12.mt.us", subject=subject, template="staff_reply", kind="reply",
                  context={"name": "Jane", "text": "Done."}, headers=(("X-Request", "PDU-1\r\nBcc: x@example.org"),))
    raw = build_email(MailboxPolicy(), draft, None).as_bytes()
    built = email.message_from_bytes(raw, policy=email.policy.default)
    assert built.get_all("Bcc") is None
    assert built["Subject"] == " ".join(subject.splitlines())
    assert built["X-Request"] == "PDU-1 Bcc: x@example.org"


@given(st.sampled_from(["Subject", "To", "Content-Type", "X-Auto-Response-Suppress"]),
       st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=100))
def test_its_header_writer_writes_what_compat32_writes(name: str, value: str):
    # The shortcut for values that need no folding must not change a byte of what compat32 would write.
    assert ONE_LINE_HEADERS.fold_binary(name, value) == email.policy.compat32.fold_binary(name, value)


def test_it_builds_the_same_email_as_compat32_would():
    parent = Message(message_id="a" * 60 + "@example.org", references=[f"{n}{'r' * 60}@example.org" for n in range(25)])
    drafts = [
        Draft(to="jdoe@gfps.k12.mt.us", subject="Cancelled: " + "very long workshop title " * 6, template="ack",
              kind="ack", context={"name": "Zoë Ñúñez", "understood": "x", "questions": [], "next_step": "y"},
              parent=parent, auto_submitted="auto-replied", cc=("a@example.org", "b@example.org")),
        Draft(to="jdoe@gfps.k12.mt.us", subject="Atelier été", template="staff_reply", kind="reply",
              context={"name": "Jane", "text": "Done."}, attachments=(("certificate.pdf", "application/pdf", b"%PDF"),)),
    ]
    for draft in drafts:
        composed = build_email(MailboxPolicy(), draft, None)
        assert composed.as_bytes() == composed.message.as_bytes(policy=email.policy.compat32)


def test_it_does_not_answer_an_out_of_office_reply_to_the_acknowledgement(sessions, mail: MailFactory):
    take(sessions, mail.raw())
    ack = the_ack(sessions)
    ooo = take(sessions, mail.raw(subject="Automatic reply: Cancelled workshop", in_reply_to=f"<{ack.message_id}>",
                                  headers={"X-Auto-Response-Suppress": "All"}, body="I am out until Monday."))
    assert ooo.classification == MessageClass.AUTO_REPLY
    assert ooo.ticket_number is None
    assert emails_queued(sessions) == 1
    assert count(sessions, Message) == 3  # kept for the record


def test_it_recognises_every_kind_of_automatic_mail(sessions, mail: MailFactory):
    automatic = [
        {"headers": {"Auto-Submitted": "auto-replied"}},
        {"headers": {"Precedence": "bulk"}},
        {"headers": {"X-Autoreply": "yes"}},
        {"subject": "Out of Office: back Monday"},
    ]
    for kwargs in automatic:
        assert take(sessions, mail.raw(**kwargs)).classification == MessageClass.AUTO_REPLY, kwargs
    assert count(sessions, Ticket) == 0
    assert emails_queued(sessions) == 0


def test_it_takes_auto_submitted_no_as_a_person(sessions, mail: MailFactory):
    receipt = take(sessions, mail.raw(headers={"Auto-Submitted": "no"}))
    assert receipt.new_ticket


def test_it_recognises_its_own_mail_coming_back(sessions, mail: MailFactory):
    receipt = take(sessions, mail.raw(headers={"X-Loop": MAILBOX}))
    assert receipt.classification == MessageClass.OWN
    assert count(sessions, Ticket) == 0


def bounce_for(address: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mail.mt.gov>\r\n"
        "To: OPIPDUPS@mt.gov\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mail.mt.gov>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mail.mt.gov\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "\r\n--B--\r\n"
    ).encode()


def test_it_marks_a_bounced_address_undeliverable_without_a_ticket(sessions, mail: MailFactory):
    with sessions() as session:
        session.add(Subscriber(email="gone@school.k12.mt.us", status=SubscriberStatus.CONFIRMED))
        session.commit()
    receipt = take(sessions, bounce_for("Gone@School.k12.mt.us"))
    assert receipt.classification == MessageClass.BOUNCE
    assert count(sessions, Ticket) == 0
    with sessions() as session:
        assert is_suppressed(session, "gone@school.k12.mt.us")
        assert session.get(Subscriber, "gone@school.k12.mt.us").status == SubscriberStatus.BOUNCED
    take(sessions, mail.raw(sender="gone@school.k12.mt.us"))
    assert emails_queued(sessions) == 0  # never mail an undeliverable address


def test_it_limits_acknowledgements_per_sender_per_hour(sessions, mail: MailFactory):
    for n in range(6):
        take(sessions, mail.raw(subject=f"Question {n}"))
    assert count(sessions, Ticket) == 6
    assert emails_queued(sessions) == POLICY.ack_limit_per_hour


def test_it_dedupes_a_message_without_message_id_by_its_content(sessions, mail: MailFactory):
    message = mail.message()
    del message["Message-ID"]
    raw = message.as_bytes()
    assert take(sessions, raw).new_ticket
    assert take(sessions, raw).duplicate
    assert count(sessions, Message) == 2  # the inbound one and its acknowledgement


def test_it_reopens_an_answered_ticket_when_the_host_writes_again(sessions, mail: MailFactory):
    first = take(sessions, mail.raw())
    with sessions() as session:
        ticket = session.get(Ticket, Ticket.id_for_number(first.ticket_number))
        ticket.status = TicketStatus.ANSWERED
        session.commit()
    take(sessions, mail.raw(subject=f"Re: [PDU-{first.ticket_number}] still stuck"))
    with sessions() as session:
        ticket = session.get(Ticket, Ticket.id_for_number(first.ticket_number))
        assert ticket.status == TicketStatus.OPEN
        actions = list(session.scalars(sa.select(AuditEntry.action).where(AuditEntry.ticket_id == ticket.id)))
    assert actions == ["created", "status", "message", "status"]


def test_it_keeps_attachments_with_their_hash_and_size(sessions, mail: MailFactory):
    message = mail.message()
    message.add_attachment(b"%PDF-1.4 roster", maintype="application", subtype="pdf", filename="roster.pdf")
    receipt = take(sessions, message.as_bytes())
    with sessions() as session:
        stored = session.get(Message, receipt.message_pk)
        (attachment,) = stored.attachments
    assert (attachment.filename, attachment.size, attachment.content_type) == ("roster.pdf", 15, "application/pdf")
    assert len(attachment.sha256) == 64


def test_it_skips_acknowledgements_for_backfill(sessions, mail: MailFactory):
    receipt = receive(sessions, mail.raw(), Source.FILE, POLICY, acknowledge_host=False)
    assert receipt.new_ticket and not receipt.acknowledged
    assert emails_queued(sessions) == 0


def test_it_builds_parts_that_no_text_or_attachment_can_break_out_of():
    """The boundary is chosen without searching the parts, so text that imitates it must not end a part."""
    text = "--=_pdubot_0123\n=_pdubot_ and --=_ at the start of lines\n"
    draft = Draft(to="jdoe@gfps.k12.mt.us", subject="Roster", template="staff_reply", kind="reply",
                  context={"name": "Jane", "text": text}, attachments=(("roster.csv", "text/csv", text.encode() * 50),))
    built = email.message_from_bytes(build_email(MailboxPolicy(), draft, None).as_bytes(), policy=email.policy.default)
    assert [part.get_content_type() for part in built.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/csv"]
    assert "--=_pdubot_0123\n=_pdubot_ and --=_ at the start" in built.get_body(("plain",)).get_content()
    (attachment,) = built.iter_attachments()
    assert attachment.get_payload(decode=True) == text.encode() * 50
