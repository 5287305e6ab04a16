"""Rules that recognise mail that is not a request: auto-replies, bounces and our own mail coming back.

Each rule answers yes or no and says why, in the manner of Mailman's rules. Such mail is stored, makes no
ticket and is never answered, so two robots can never talk to each other through the mailbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from storage.enums import MessageClass
from workflows.parsing import ParsedMail, clean, header, is_address, walk_parts


@dataclass(frozen=True)
class Verdict:
    classification: MessageClass
    reason: str
    failed_addresses: list[str] = field(default_factory=list)


Rule = Callable[[ParsedMail, frozenset[str]], Verdict | None]

OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|auto:|"
    r"away from (my|the) (office|desk)|on vacation|on leave|ooo\b|abwesenheit|r[ée]ponse automatique)",
    re.IGNORECASE,
)
BOUNCE_SUBJECT = re.compile(
    r"(undeliverable|undelivered mail|delivery status notification \(failure\)|mail delivery (failed|failure)|"
    r"returned mail|delivery failure|failure notice|could not be delivered)",
    re.IGNORECASE,
)
BOUNCE_SENDERS = ("mailer-daemon@", "postmaster@")


def own_message(parsed: ParsedMail, mailbox: frozenset[str]) -> Verdict | None:
    """Our own outgoing mail seen again: X-Loop names the mailbox (set on everything we send)."""
    loop = parsed.headers.get("x-loop", "").strip().lower()
    if loop and loop in mailbox:
        return Verdict(MessageClass.OWN, f"X-Loop: {loop}")
    if parsed.from_addr in mailbox:
        return Verdict(MessageClass.OWN, f"sent from the mailbox address {parsed.from_addr}")
    return None


def delivery_report(parsed: ParsedMail, _mailbox: frozenset[str]) -> Verdict | None:
    """RFC 3464 delivery status notifications, and the looser bounces of servers that send none."""
    content_type = parsed.headers.get("content-type", "").lower()
    is_dsn = "multipart/report" in content_type and "delivery-status" in content_type
    from_daemon = parsed.from_addr.startswith(BOUNCE_SENDERS)
    null_sender = parsed.headers.get("return-path", "").strip() == "<>"
    subject_says = bool(BOUNCE_SUBJECT.search(parsed.subject))
    if not (is_dsn or ((from_daemon or null_sender) and subject_says)):
        return None
    failed = failed_recipients(parsed)
    reason = "delivery status notification" if is_dsn else f"bounce from {parsed.from_addr or 'the null sender'}"
    return Verdict(MessageClass.BOUNCE, reason, failed)


def auto_submitted(parsed: ParsedMail, _mailbox: frozenset[str]) -> Verdict | None:
    """RFC 3834 section 5: any Auto-Submitted value other than "no" marks an automatic message."""
    value = parsed.headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if value and value != "no":
        return Verdict(MessageClass.AUTO_REPLY, f"Auto-Submitted: {value}")
    return None


def autoreply_headers(parsed: ParsedMail, _mailbox: frozenset[str]) -> Verdict | None:
    """Vendor headers: X-Autoreply and X-Autorespond, and Exchange's X-Auto-Response-Suppress."""
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        if parsed.headers.get(name, "").strip():
            return Verdict(MessageClass.AUTO_REPLY, f"{name} header present")
    return None


def bulk_precedence(parsed: ParsedMail, _mailbox: frozenset[str]) -> Verdict | None:
    """RFC 3834 section 2 asks responders not to answer Precedence bulk, junk or list."""
    value = parsed.headers.get("precedence", "").strip().lower()
    if value in ("bulk", "junk", "list"):
        return Verdict(MessageClass.AUTO_REPLY, f"Precedence: {value}")
    return None


def out_of_office_subject(parsed: ParsedMail, _mailbox: frozenset[str]) -> Verdict | None:
    if OUT_OF_OFFICE_SUBJECT.search(parsed.subject):
        return Verdict(MessageClass.AUTO_REPLY, f"out-of-office subject: {parsed.subject[:80]}")
    return None


# Order matters: a bounce often also carries Auto-Submitted, and must be seen as a bounce to suppress the address.
RULES: tuple[Rule, ...] = (
    own_message,
    delivery_report,
    auto_submitted,
    autoreply_headers,
    bulk_precedence,
    out_of_office_subject,
)


def classify(parsed: ParsedMail, mailbox: frozenset[str]) -> Verdict:
    """The first rule that matches decides; a message no rule claims is a request."""
    if parsed.unreadable:
        return Verdict(MessageClass.UNREADABLE, parsed.unreadable)
    for rule in RULES:
        verdict = rule(parsed, mailbox)
        if verdict is not None:
            return verdict
    return Verdict(MessageClass.REQUEST, "no rule matched")


def failed_recipients(parsed: ParsedMail) -> list[str]:
    """Addresses a bounce reports as permanently failed (RFC 3464 Action: failed, or X-Failed-Recipients)."""
    found: list[str] = []
    if parsed.message is not None:
        found.extend(_dsn_failures(parsed.message))
    for value in parsed.headers.get("x-failed-recipients", "").split(","):
        found.append(value.strip().lower())
    # Only what could be a real mailbox is worth suppressing, and anything longer would not fit the list.
    return sorted({address for address in found if is_address(address)})


def _dsn_failures(message: Message) -> list[str]:
    failures: list[str] = []
    for part in walk_parts(message):  # a report can be buried under any depth of parts
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            action = header(block, "action").strip().lower()
            recipient = header(block, "final-recipient") or header(block, "original-recipient")
            address = clean(recipient.split(";")[-1]).strip().strip("<>").lower()
            if action == "failed":
                failures.append(address)
    return failures
