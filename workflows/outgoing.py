"""Compose the emails the service sends and put them in the outbox, inside the caller's transaction."""

from __future__ import annotations

import email.charset
import email.encoders
import email.header
import email.utils
import secrets
from dataclasses import dataclass
from email.message import Message as MimeMessage
from email.policy import Compat32
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.base import utcnow
from storage.enums import Channel, Direction, MessageClass, Source
from storage.outbox import OUTBOX
from storage.tickets import MESSAGES, Message, Ticket
from templates import render_pair
from workflows.parsing import normalize_message_id
from workflows.policy import MailboxPolicy

MAX_REFERENCES = 20
INSERT_MESSAGE = sa.insert(MESSAGES)
INSERT_EMAIL = sa.insert(OUTBOX).returning(OUTBOX.c.id)


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


@dataclass(frozen=True)
class Composed:
    """A built email, with what the conversation keeps of it."""

    message: MimeMessage
    message_id: str  # without angle brackets
    subject: str
    text: str  # the plain-text body

    def as_bytes(self) -> bytes:
        return self.message.as_bytes(policy=ONE_LINE_HEADERS)


class OneLineHeaders(Compat32):
    """compat32, except that a header value that already is one short line of printable ASCII is written as is.

    compat32 hands every header to ``email.header.Header`` to fold and encode it, which was a tenth of
    intake's CPU for the twenty-odd headers of an acknowledgement and its parts. For a value that needs
    neither, that gives back the same bytes (tests/test_inbox.py compares the two over generated values and
    over built emails); any other value still goes through it.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        fits = isinstance(value, str) and len(name) + 2 + len(value) <= (self.max_line_length or 0)
        if fits and value.isascii() and value.isprintable():  # printable: no line break, no control character
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


ONE_LINE_HEADERS = OneLineHeaders()


def build_email(policy: MailboxPolicy, draft: Draft, ticket: Ticket | None) -> Composed:
    """The complete RFC 5322 message for ``draft``, from the mailbox, with a Message-ID in our domain.

    Built with the ``email.mime`` classes and the compat32 policy, which take the values as given: the
    modern API parses every header it is handed and took three times as long as the rest of taking in a
    request. The values are made safe here instead: no header value can hold a line break (``_header``).
    """
    context = {"mailbox": policy.address, "ticket_tag": ticket.tag if ticket else "", "subject": draft.subject}
    context.update(draft.context)
    text, html = render_pair(draft.template, **context)
    body = MIMEMultipart("alternative", boundary=boundary())
    body.attach(_text_part(text, "plain"))
    body.attach(_text_part(html, "html"))
    message = body
    if draft.attachments:
        # An attachment makes the message multipart/mixed around the alternative (RFC 2046 section 5.1.3).
        message = MIMEMultipart("mixed", boundary=boundary())
        del body["MIME-Version"]
        message.attach(body)
        for filename, mime_type, content in draft.attachments:
            message.attach(_attachment(filename, mime_type, content))
    message_id = email.utils.make_msgid(idstring="pdubot", domain=policy.domain)
    subject = tagged_subject(draft.subject, ticket)
    headers = [
        ("From", email.utils.formataddr((policy.display_name, policy.address), charset="utf-8")),
        ("To", draft.to),
        *([("Cc", ", ".join(draft.cc))] if draft.cc else []),
        ("Subject", subject),
        ("Date", email.utils.format_datetime(utcnow())),
        ("Message-ID", message_id),
        # X-Loop lets the non-request rules recognise our own mail if it ever comes back to the mailbox.
        ("X-Loop", policy.address),
    ]
    if draft.auto_submitted:
        # Exchange and Outlook honour the second and send no out-of-office answer to our automatic mail.
        headers += [("Auto-Submitted", draft.auto_submitted), ("X-Auto-Response-Suppress", "OOF, AutoReply")]
    if draft.parent is not None:
        headers += _threading(draft.parent)
    headers += draft.headers
    # The headers go first, above the MIME ones the parts were built with.
    mime_headers = message.items()
    for name in {name for name, _ in mime_headers}:
        del message[name]
    for name, value in [*headers, *mime_headers]:
        message[name] = _header(value)
    return Composed(message, normalize_message_id(message_id), subject, text)


BODY_CHARSET = email.charset.Charset("utf-8")
BODY_CHARSET.body_encoding = email.charset.QP  # readable in the raw message, and safe for any line length


def boundary() -> str:
    """A multipart boundary no part can contain, so the generator need not search the parts for it.

    Text parts are quoted-printable, where "=" is always followed by two hex digits or a line break, and
    attachments are base64, which has no "_": neither can hold "=_" (RFC 2045 sections 6.7 and 6.8).
    """
    return f"=_pdubot_{secrets.token_hex(12)}"


def _header(value: object) -> object:
    """A header value on one line: compat32 writes what it is given, so a line break would start a header."""
    if isinstance(value, str):
        one_line = " ".join(value.splitlines())
        return one_line if one_line.isascii() else email.header.Header(one_line, "utf-8")
    return value


def _text_part(text: str, subtype: str) -> MIMEText:
    part = MIMEText(text, subtype, BODY_CHARSET)
    del part["MIME-Version"]  # RFC 2045 section 4: it belongs in the message's own header only
    return part


def _attachment(filename: str, mime_type: str, content: bytes) -> MIMEBase:
    maintype, _, subtype = mime_type.partition("/")
    part = MIMEBase(maintype, subtype or "octet-stream")
    del part["MIME-Version"]
    part.set_payload(content)
    email.encoders.encode_base64(part)
    name: str | tuple[str, str, str] = filename if filename.isascii() else ("utf-8", "", filename)
    part.add_header("Content-Disposition", "attachment", filename=name)  # RFC 2231 for a non-ASCII name
    return part


def tagged_subject(subject: str, ticket: Ticket | None) -> str:
    """``[PDU-1042] Re: ...``: the tag threads replies whose client dropped In-Reply-To."""
    subject = subject or "(no subject)"
    if ticket is None or f"[{ticket.tag}]".lower() in subject.lower():
        return subject
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    return f"[{ticket.tag}] {subject}"[:998]  # RFC 5322 section 2.1.1: a line is at most 998 characters


def _threading(parent: Message) -> list[tuple[str, str]]:
    """RFC 5322 section 3.6.4: In-Reply-To is the parent, References the parent's references plus the parent."""
    if not parent.message_id:
        return []
    references = [*parent.references[-(MAX_REFERENCES - 1):], parent.message_id]
    return [("In-Reply-To", f"<{parent.message_id}>"), ("References", " ".join(f"<{ref}>" for ref in references))]


def queue_email(session: Session, policy: MailboxPolicy, draft: Draft, ticket: Ticket | None) -> int:
    """Add the email to the outbox and to the ticket's conversation; returns its outbox row's id. The caller
    commits.

    Both are written at once as plain rows: nothing reads them back as objects before the commit, and the
    ORM's bookkeeping for them cost more than the INSERTs on every message intake answers. The ticket is
    stored first if it is new. The keys of the emails queued are kept in ``session.info`` (``queued_in``).
    """
    composed = build_email(policy, draft, ticket)
    raw = composed.as_bytes()
    if ticket is not None and ticket.id is None:
        session.flush()
    ticket_id = ticket.id if ticket is not None else None
    connection = session.connection()
    connection.execute(INSERT_MESSAGE, {
        "ticket_id": ticket_id,
        "direction": Direction.OUT,
        "classification": MessageClass.OUTGOING,
        "source": Source.SERVICE,
        "message_id": composed.message_id,
        "in_reply_to": draft.parent.message_id if draft.parent else "",
        "references": [*draft.parent.references, draft.parent.message_id] if draft.parent else [],
        "subject": composed.subject,
        "from_addr": policy.address.lower(),
        "to_addrs": [draft.to.lower(), *draft.cc],
        "date": utcnow(),
        "new_text": composed.text,
        "full_text": composed.text,
        "raw": raw,
        "raw_size": len(raw),
    })
    item_id: int = connection.execute(INSERT_EMAIL, {
        "channel": Channel.EMAIL,
        "kind": draft.kind,
        "ticket_id": ticket_id,
        "recipient": draft.to.lower(),
        "sender": policy.address,
        "message_id": composed.message_id,
        "dedupe_key": draft.dedupe_key,
        "body": raw,
    }).scalar_one()
    if draft.dedupe_key is not None:
        queued_in(session).add(draft.dedupe_key)
    return item_id


def queued_in(session: Session) -> set[str]:
    """The dedupe keys of the emails queued in ``session`` (by ``queue_email``)."""
    queued: set[str] = session.info.setdefault("queued_emails", set())
    return queued
