"""Compose the emails the service sends and put them in the outbox, inside the caller's transaction."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from storage.base import utcnow
from storage.enums import Channel, Direction, MessageClass, Source
from storage.outbox import OutboxItem
from storage.tickets import Message, Ticket
from templates import render_pair
from workflows.parsing import normalize_message_id
from workflows.policy import MailboxPolicy

MAX_REFERENCES = 20


@dataclass(frozen=True)
class Draft:
    """One email to send: who to, the template, and where it sits in a conversation."""

    to: str
    subject: str
    template: str
    context: dict[str, Any]
    kind: str
    parent: Message | None = None  # the message this one answers, for In-Reply-To and References
    auto_submitted: str | None = None  # RFC 3834: "auto-replied" or "auto-generated"
    cc: tuple[str, ...] = ()
    dedupe_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra header fields, added after the standard ones
    attachments: tuple[tuple[str, str, bytes], ...] = ()  # (filename, MIME type, content)


def build_email(policy: MailboxPolicy, draft: Draft, ticket: Ticket | None) -> EmailMessage:
    """The complete RFC 5322 message for ``draft``, from the mailbox, with a Message-ID in our domain."""
    context = {"mailbox": policy.address, "ticket_tag": ticket.tag if ticket else "", "subject": draft.subject}
    context.update(draft.context)
    text, html = render_pair(draft.template, **context)
    message = EmailMessage()
    message["From"] = email.utils.formataddr((policy.display_name, policy.address))
    message["To"] = draft.to
    if draft.cc:
        message["Cc"] = ", ".join(draft.cc)
    message["Subject"] = tagged_subject(draft.subject, ticket)
    message["Date"] = email.utils.format_datetime(utcnow())
    message["Message-ID"] = email.utils.make_msgid(idstring="pdubot", domain=policy.domain)
    # X-Loop lets the non-request rules recognise our own mail if it ever comes back to the mailbox.
    message["X-Loop"] = policy.address
    if draft.auto_submitted:
        message["Auto-Submitted"] = draft.auto_submitted
        # Exchange and Outlook honour this and send no out-of-office answer to our automatic mail.
        message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    if draft.parent is not None:
        _thread_under(message, draft.parent)
    for name, value in draft.headers:
        message[name] = value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for filename, mime_type, content in draft.attachments:
        maintype, _, subtype = mime_type.partition("/")
        # Adding an attachment turns the alternative into multipart/mixed (RFC 2046 section 5.1.3).
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message


def tagged_subject(subject: str, ticket: Ticket | None) -> str:
    """``[PDU-1042] Re: ...``: the tag threads replies whose client dropped In-Reply-To."""
    subject = subject or "(no subject)"
    if ticket is None or f"[{ticket.tag}]".lower() in subject.lower():
        return subject
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    return f"[{ticket.tag}] {subject}"[:998]  # RFC 5322 section 2.1.1: a line is at most 998 characters


def _thread_under(message: EmailMessage, parent: Message) -> None:
    """RFC 5322 section 3.6.4: In-Reply-To is the parent, References the parent's references plus the parent."""
    if not parent.message_id:
        return
    references = [*parent.references[-(MAX_REFERENCES - 1):], parent.message_id]
    message["In-Reply-To"] = f"<{parent.message_id}>"
    message["References"] = " ".join(f"<{ref}>" for ref in references)


def queue_email(session: Session, policy: MailboxPolicy, draft: Draft, ticket: Ticket | None) -> OutboxItem:
    """Add the email to the outbox and to the ticket's conversation. The caller commits."""
    message = build_email(policy, draft, ticket)
    raw = message.as_bytes()
    message_id = normalize_message_id(message["Message-ID"])
    text_part = message.get_body(preferencelist=("plain",))
    session.add(
        Message(
            ticket=ticket,
            direction=Direction.OUT,
            classification=MessageClass.OUTGOING,
            source=Source.SERVICE,
            message_id=message_id,
            in_reply_to=draft.parent.message_id if draft.parent else "",
            references=[*draft.parent.references, draft.parent.message_id] if draft.parent else [],
            subject=str(message["Subject"]),
            from_addr=policy.address.lower(),
            to_addrs=[draft.to.lower(), *draft.cc],
            date=utcnow(),
            new_text=text_part.get_content() if text_part else "",
            full_text=text_part.get_content() if text_part else "",
            raw=raw,
            raw_size=len(raw),
        )
    )
    item = OutboxItem(
        channel=Channel.EMAIL,
        kind=draft.kind,
        ticket_id=ticket.id if ticket else None,
        recipient=draft.to.lower(),
        sender=policy.address,
        message_id=message_id,
        dedupe_key=draft.dedupe_key,
        body=raw,
    )
    session.add(item)
    return item
