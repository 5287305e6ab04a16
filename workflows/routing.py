"""Where a new ticket goes once it is read, and what a host's later message does to it.

A new ticket either asks the host for what is missing, is answered at once (login help, an edit the
host can make in PDUPS, the mailing list), waits for the account contact to confirm, is recorded at
once (a certificate count from the host's own people), or goes in front of staff.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.enums import SubscriberStatus, TicketKind, TicketStatus
from storage.mailing import Subscriber, find_subscriber
from storage.outbox import OutboxItem
from storage.registry import Event, Host
from storage.tickets import Message, Ticket
from workflows.decisions import approve
from workflows.ticket_actions import SYSTEM_ACTOR, audit, move_ticket, queue_acknowledgement
from workflows.kinds import spec_for
from workflows.kinds.base import Approval
from workflows.outgoing import Draft, queue_email
from workflows.parsing import ParsedMail
from workflows.policy import MailboxPolicy
from workflows.reading import Reading, read
from workflows.staff import StaffPost, post_to_staff, queue_card

AUTOMATIC_ACTOR = "pdubot (automatic)"
YES = re.compile(r"^\W*(?:yes|yep|yeah|confirm(?:ed)?|correct|approved?|ok(?:ay)?|go ahead|that'?s right|please do)\b", re.IGNORECASE)
NO = re.compile(r"^\W*(?:no|nope|do not|don'?t|deny|denied|not correct|incorrect|wrong)\b", re.IGNORECASE)


def route_new(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> None:
    """Answer the host and put the ticket where it belongs, in the same transaction as its creation."""
    if reading.missing:
        move_ticket(session, ticket, TicketStatus.NEEDS_INFO, SYSTEM_ACTOR, ", ".join(reading.missing))
        acknowledge(session, policy, ticket, message, reading)
        notify_staff_of_new(session, ticket)
        return
    handler = IMMEDIATE.get(ticket.kind)
    if handler is not None and handler(session, policy, ticket, message, reading):
        return
    if needs_contact_confirmation(ticket, reading):
        ask_contact_to_confirm(session, policy, ticket, message, reading)
        return
    move_ticket(session, ticket, TicketStatus.OPEN, SYSTEM_ACTOR)
    acknowledge(session, policy, ticket, message, reading)
    notify_staff_of_new(session, ticket)


def notify_staff_of_new(session: Session, ticket: Ticket) -> None:
    """Post the ticket's card once; a ticket routed again (a missing piece arrived) keeps its card."""
    queue_card(session, ticket.id)


def acknowledge(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> None:
    """The plain acknowledgement: what we understood, what is missing, and what happens next."""
    queue_acknowledgement(session, policy, ticket, message, "ack", {
        "understood": reading.understood, "questions": reading.questions, "next_step": reading.next_step,
    })


def answer_login_help(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> bool:
    """The Secure Portal reset steps, at once; the ticket reaches staff only if the host writes again."""
    username = _username_hint(session, ticket)
    queue_acknowledgement(session, policy, ticket, message, "login_help", {"username_hint": username})
    move_ticket(session, ticket, TicketStatus.ANSWERED, SYSTEM_ACTOR, "sent the Secure Portal reset steps")
    return True


def _username_hint(session: Session, ticket: Ticket) -> str:
    from storage.registry import User

    user = session.scalar(sa.select(User).where(sa.func.lower(User.email) == ticket.requester.lower()).limit(1))
    return user.username if user else "yourusername"


def answer_self_service_edit(
    session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading
) -> bool:
    """An event that has not ended is edited by the host in PDUPS (List Events → Edit)."""
    if not reading.fields.get("self_service"):
        return False
    event = session.get(Event, ticket.event_id) if ticket.event_id else None
    changes = ", ".join(f"{k.replace('_', ' ')} → {v}" for k, v in (reading.fields.get("changes") or {}).items())
    queue_acknowledgement(session, policy, ticket, message, "self_service_edit", {
        "event_title": event.title if event else "This event",
        "event_end": f"{event.end_date:%B %-d, %Y}" if event else "a later date",
        "changes": changes,
    })
    move_ticket(session, ticket, TicketStatus.ANSWERED, SYSTEM_ACTOR, "the host can edit this event in PDUPS")
    return True


def start_subscription(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> bool:
    """Double opt-in: the address must answer our confirmation before it receives any mailing."""
    person = reading.fields.get("person") or {}
    email = (person.get("email") or message.from_addr).lower()
    subscriber = find_subscriber(session, email)
    if subscriber is not None and subscriber.status == SubscriberStatus.CONFIRMED:
        move_ticket(session, ticket, TicketStatus.CLOSED, SYSTEM_ACTOR, f"{email} is already on the list")
        return True
    if subscriber is None:
        subscriber = Subscriber(email=email)
        session.add(subscriber)
    subscriber.name = person.get("name") or subscriber.name or ""
    subscriber.organization = person.get("organization") or subscriber.organization or ""
    subscriber.status = SubscriberStatus.PENDING
    subscriber.source = f"email {ticket.tag}"
    subscriber.confirm_token = secrets.token_urlsafe(24)
    draft = Draft(
        to=email, subject=ticket.subject or "Mailing list", template="subscribe_confirm",
        context={"name": subscriber.name, "email": email}, kind="subscribe_confirm",
        parent=message, auto_submitted="auto-replied", dedupe_key=f"subscribe_confirm:{ticket.id}",
    )
    queue_email(session, policy, draft, ticket)
    move_ticket(session, ticket, TicketStatus.AWAITING_CONFIRMATION, SYSTEM_ACTOR, f"asked {email} to confirm")
    return True


def unsubscribe_sender(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> bool:
    """Leaving is immediate for the sender's own address; removing someone else goes to staff."""
    person = reading.fields.get("person") or {}
    email = (person.get("email") or message.from_addr).lower()
    if email != message.from_addr.lower():
        return False
    subscriber = find_subscriber(session, email)
    if subscriber is None:
        subscriber = Subscriber(email=email, name=person.get("name") or "", organization=person.get("organization") or "")
        session.add(subscriber)
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.source = f"email {ticket.tag}"
    audit(session, ticket, "unsubscribed", f"host:{email}", after={"email": email})
    queue_acknowledgement(session, policy, ticket, message, "unsubscribed", {"email": email})
    move_ticket(session, ticket, TicketStatus.CLOSED, SYSTEM_ACTOR, f"{email} left the mailing list")
    return True


def record_count_at_once(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading) -> bool:
    """The one exception to staff approval: a count from the event host's own people is recorded at once,
    and staff are told with an Undo."""
    if not policy.auto_record_counts or not reading.sender_on_file or "dmarc_fail" in reading.flags:
        return False
    event = session.get(Event, ticket.event_id) if ticket.event_id else None
    if event is None or event.host_id != ticket.host_id or event.status.value != "scheduled":
        return False
    move_ticket(session, ticket, TicketStatus.OPEN, SYSTEM_ACTOR)
    approve(session, policy, ticket.number, AUTOMATIC_ACTOR, notify_host=False)
    queue_acknowledgement(session, policy, ticket, message, "count_recorded", {
        "count": reading.fields["count"], "event_title": event.title,
        "event_dates": _dates(event),
    })
    notify_staff_of_new(session, ticket)
    return True


def _dates(event: Event) -> str:
    if event.start_date == event.end_date:
        return f"{event.start_date:%B %-d, %Y}"
    return f"{event.start_date:%B %-d, %Y} to {event.end_date:%B %-d, %Y}"


IMMEDIATE = {
    TicketKind.LOGIN_HELP: answer_login_help,
    TicketKind.EVENT_EDIT: answer_self_service_edit,
    TicketKind.SUBSCRIBE: start_subscription,
    TicketKind.UNSUBSCRIBE: unsubscribe_sender,
    TicketKind.CERTIFICATE_COUNT: record_count_at_once,
}


def needs_contact_confirmation(ticket: Ticket, reading: Reading) -> bool:
    """Account changes and user changes from someone not on file (or failing DMARC) need the contact's word.

    Never trust a From line for account changes: a sender is "on file" only when the address matches a user
    or the contact of the host, and a DMARC failure means even that address cannot be trusted.
    """
    if spec_for(ticket.kind).approval != Approval.STAFF_VERIFIED:
        return False
    return not reading.sender_on_file or "dmarc_fail" in reading.flags


def ask_contact_to_confirm(
    session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, reading: Reading
) -> None:
    host = session.get(Host, ticket.host_id) if ticket.host_id else None
    if host is None or not host.contact_email:
        move_ticket(session, ticket, TicketStatus.OPEN, SYSTEM_ACTOR, "no account contact on file to confirm")
        ticket.flags = [*ticket.flags, "unverified_sender"]
        acknowledge(session, policy, ticket, message, reading)
        notify_staff_of_new(session, ticket)
        return
    draft = Draft(
        to=host.contact_email, subject=f"Please confirm: {ticket.subject or ticket.kind.value}",
        template="confirm_request",
        context={"contact_name": host.contact_name, "host_name": host.name, "requester": message.from_addr,
                 "understood": reading.understood},
        kind="confirm_request", auto_submitted="auto-generated", dedupe_key=f"confirm_request:{ticket.id}",
    )
    queue_email(session, policy, draft, ticket)
    queue_acknowledgement(session, policy, ticket, message, "confirming", {
        "understood": reading.understood, "host_name": host.name,
    })
    move_ticket(session, ticket, TicketStatus.AWAITING_CONFIRMATION, SYSTEM_ACTOR, f"asked {host.contact_email} to confirm")
    notify_staff_of_new(session, ticket)


def route_follow_up(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, parsed: ParsedMail) -> None:
    """A host's later message: it confirms, fills in what was missing, or simply goes in front of staff."""
    post_to_staff(session, StaffPost.THREAD, ticket, text=f"{message.from_addr} wrote:\n{message.new_text[:3000]}")
    if ticket.status == TicketStatus.AWAITING_CONFIRMATION:
        handle_confirmation(session, policy, ticket, message, parsed)
    elif ticket.status == TicketStatus.NEEDS_INFO:
        fill_in_missing(session, policy, ticket, message, parsed)
    elif ticket.status in (TicketStatus.WAITING_ON_HOST, TicketStatus.ANSWERED):
        move_ticket(session, ticket, TicketStatus.OPEN, SYSTEM_ACTOR, "the host wrote again")
        post_to_staff(session, StaffPost.CARD_UPDATE, ticket)


def answers_our_message(session: Session, ticket: Ticket, parsed: ParsedMail, kind: str) -> bool:
    """The reply threads (In-Reply-To or References) under an email of ``kind`` we sent for this ticket.

    Our Message-IDs are unguessable, unlike the subject tag, so this proves the reply saw our email.
    """
    ids = {parsed.in_reply_to, *parsed.references} - {""}
    if not ids:
        return False
    query = sa.select(OutboxItem.id).where(
        OutboxItem.ticket_id == ticket.id, OutboxItem.kind == kind, OutboxItem.message_id.in_(ids)
    )
    return session.scalar(query.limit(1)) is not None


def handle_confirmation(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, parsed: ParsedMail) -> None:
    if ticket.kind == TicketKind.SUBSCRIBE:
        confirm_subscription(session, policy, ticket, message, parsed)
        return
    host = session.get(Host, ticket.host_id) if ticket.host_id else None
    from_contact = host is not None and message.from_addr.lower() == host.contact_email.lower()
    if not (from_contact and answers_our_message(session, ticket, parsed, "confirm_request")):
        return  # the requester adding detail; still waiting for the contact
    answer = message.new_text.strip()
    flag = "confirmed_by_contact" if YES.search(answer) else "contact_declined" if NO.search(answer) else "contact_replied"
    ticket.flags = [*ticket.flags, flag]
    audit(session, ticket, flag, f"contact:{message.from_addr}", detail=answer[:500])
    move_ticket(session, ticket, TicketStatus.OPEN, SYSTEM_ACTOR, flag.replace("_", " "))
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)


def confirm_subscription(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, parsed: ParsedMail) -> None:
    email = message.from_addr.lower()
    subscriber = find_subscriber(session, email)
    if subscriber is None or not answers_our_message(session, ticket, parsed, "subscribe_confirm"):
        return
    if not YES.search(message.new_text.strip()):
        return
    subscriber.status = SubscriberStatus.CONFIRMED
    subscriber.confirm_token = None
    audit(session, ticket, "subscribed", f"host:{email}", after={"email": email})
    draft = Draft(to=email, subject=ticket.subject or "Mailing list", template="subscribed",
                  context={"name": subscriber.name, "email": email}, kind="subscribed", parent=message,
                  auto_submitted="auto-replied", dedupe_key=f"subscribed:{ticket.id}")
    queue_email(session, policy, draft, ticket)
    move_ticket(session, ticket, TicketStatus.CLOSED, SYSTEM_ACTOR, f"{email} confirmed")


def fill_in_missing(session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, parsed: ParsedMail) -> None:
    """Read the whole conversation again, with the kind already known, and move on once nothing is missing."""
    inbound = session.scalars(
        sa.select(Message).where(Message.ticket_id == ticket.id, Message.direction == "in").order_by(Message.id)
    ).all()
    first = inbound[0]
    combined = replace(
        parsed,
        from_addr=first.from_addr,
        from_name=first.from_name,
        subject=first.subject,
        new_text="\n\n".join(m.new_text for m in inbound if m.new_text),
    )
    reading = read(session, combined, kind=ticket.kind)
    before = {"host_id": ticket.host_id, "event_id": ticket.event_id, "fields": ticket.fields, "missing": ticket.missing}
    ticket.host_id, ticket.event_id = reading.host_id, reading.event_id
    ticket.fields, ticket.missing, ticket.flags = reading.fields, reading.missing, reading.flags
    audit(session, ticket, "reread", SYSTEM_ACTOR, before, reading.as_json())
    if reading.missing:
        post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
        return
    route_new(session, policy, ticket, message, reading)
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
