"""A ticket's card in Block Kit, rendered from the ticket's current state each time it is posted or updated.

Everything that came from an email (subject, the host's words, names, file names) is escaped, so a
message cannot ping the channel, mention anyone or hide a link. Registry values are escaped too: they
come from CSV exports that nobody checks for Slack's control characters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from bot.slack.text import CARD_TEXT_LIMIT, escape, fold, quoted, size, when
from storage.changes import ChangeRecord
from storage.enums import OPEN_STATUSES, Direction, TicketKind, TicketStatus
from storage.registry import Event, Host
from storage.tickets import Attachment, Message, Ticket
from workflows.formatting import format_dates, format_pdus
from workflows.routing import AUTOMATIC_ACTOR

APPROVE = "ticket_approve"
EDIT_APPROVE = "ticket_edit_approve"
REJECT = "ticket_reject"
ASK_HOST = "ticket_ask_host"
ASSIGN = "ticket_assign"
REPLY = "ticket_reply"
UNDO = "ticket_undo"

LOW_CONFIDENCE = 0.5
FLAG_LABELS = {
    "sender_not_on_file": ":warning: sender not on file",
    "unverified_sender": ":warning: unverified sender (no account contact to confirm)",
    "confirmed_by_contact": ":white_check_mark: confirmed by the account contact",
    "contact_declined": ":no_entry: the account contact declined",
    "contact_replied": ":speech_balloon: the account contact replied (read the thread)",
    "dmarc_fail": ":warning: DMARC failed: the From address may be forged",
    "event_of_another_host": ":warning: the event belongs to another host",
}
STATUS_LABELS = {
    TicketStatus.NEW: "New",
    TicketStatus.NEEDS_INFO: "Waiting for the host to send what is missing",
    TicketStatus.AWAITING_CONFIRMATION: "Waiting for the account contact to confirm",
    TicketStatus.OPEN: "Open: waiting for staff",
    TicketStatus.WAITING_ON_HOST: "Waiting for the host to answer staff",
    TicketStatus.APPROVED: "Approved",
    TicketStatus.REJECTED: "Rejected",
    TicketStatus.ANSWERED: "Answered automatically",
    TicketStatus.CLOSED: "Closed",
}


@dataclass(frozen=True)
class CardFacts:
    """Everything a card shows, read in one session."""

    ticket: Ticket
    host: Host | None
    event: Event | None
    request: Message | None  # the first email of the ticket: the request itself
    attachments: list[Attachment]
    change: ChangeRecord | None  # what approval changed in the registry, once approved


# Built once: every card posted runs them, and building a statement costs about as much as running it.
INBOUND = (
    sa.select(Message).where(Message.ticket_id == sa.bindparam("ticket_id"), Message.direction == Direction.IN)
    .order_by(Message.id).options(joinedload(Message.attachments))
)
LAST_CHANGE = (
    sa.select(ChangeRecord).where(ChangeRecord.ticket_id == sa.bindparam("ticket_id"))
    .order_by(ChangeRecord.id.desc()).limit(1)
)


def load_card(session: Session, ticket: Ticket) -> CardFacts:
    """Every card posted reads this, so it costs few round trips: the messages come with their attachments,
    and the change log is read only for a decided ticket (a change is recorded only by a decision)."""
    inbound = list(session.scalars(INBOUND, {"ticket_id": ticket.id}).unique())
    change = session.scalar(LAST_CHANGE, {"ticket_id": ticket.id}) if ticket.decided_at is not None else None
    return CardFacts(
        ticket=ticket,
        host=session.get(Host, ticket.host_id) if ticket.host_id else None,
        event=session.get(Event, ticket.event_id) if ticket.event_id else None,
        request=inbound[0] if inbound else None,
        attachments=[a for m in inbound for a in m.attachments],
        change=change if change is not None and change.action != "undo" else None,
    )


def kind_label(kind: TicketKind) -> str:
    return kind.value.replace("_", " ").capitalize()


def card_text(ticket: Ticket) -> str:
    """The notification text: what shows in alerts and to screen readers."""
    sender = escape(ticket.requester_name or ticket.requester or "unknown sender")
    return f"{ticket.tag} {kind_label(ticket.kind).lower()} from {sender}: {escape(fold(ticket.subject, 150))}"


def render_card(facts: CardFacts, tz: ZoneInfo) -> dict[str, Any]:
    """``text`` and ``blocks`` for chat.postMessage and chat.update."""
    ticket = facts.ticket
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{ticket.tag} \u00b7 {kind_label(ticket.kind)}"}},
        {"type": "section", "text": mrkdwn(f"*Subject:* {escape(fold(ticket.subject, 200)) or '(none)'}"),
         "fields": [mrkdwn(host_field(facts.host)), mrkdwn(event_field(facts.event)),
                    mrkdwn(requester_field(ticket)), mrkdwn(f"*Status*\n{STATUS_LABELS[ticket.status]}")]},
    ]
    change = change_lines(facts)
    if change:
        blocks.append(section("\n".join(change)))
    flags = flag_lines(ticket)
    if flags:
        blocks.append({"type": "context", "elements": [mrkdwn("\n".join(flags))]})
    if facts.request is not None:
        blocks.append(section(f"*{escape(facts.request.from_addr or 'They')} wrote:*\n"
                              f"{quoted(facts.request.new_text, CARD_TEXT_LIMIT)}"))
    if facts.attachments:
        blocks.append(section("*Attachments*\n" + "\n".join(attachment_line(a) for a in facts.attachments[:20])))
    blocks.append({"type": "context", "elements": [mrkdwn(history_line(ticket, tz))]})
    actions = buttons(ticket)
    if actions:
        blocks.append({"type": "actions", "block_id": f"ticket:{ticket.number}", "elements": actions})
    return {"text": card_text(ticket), "blocks": blocks}


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:2900]}  # Slack refuses section texts over 3,000 characters


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text)}


def host_field(host: Host | None) -> str:
    if host is None:
        return "*Host*\nnot matched"
    contact = escape(host.contact_name or host.contact_email or "no contact on file")
    inactive = "" if host.status == "active" else f" ({escape(host.status)})"
    return f"*Host*\n{escape(host.name)} (`{escape(host.host_id)}`){inactive}\ncontact: {contact}"


def event_field(event: Event | None) -> str:
    if event is None:
        return "*Event*\nnot matched"
    count = "blank" if event.certificates_issued is None else str(event.certificates_issued)
    cancelled = " \u00b7 *cancelled*" if event.status.value == "cancelled" else ""
    return (f"*Event*\n{escape(event.title)} (`{escape(event.event_id)}`)\n"
            f"{format_dates(event.start_date, event.end_date)} \u00b7 {format_pdus(event.hours)} PDUs \u00b7 "
            f"{escape(event.location or 'no location')}\ncertificates issued: {count}{cancelled}")


def requester_field(ticket: Ticket) -> str:
    on_file = "not on file" if "sender_not_on_file" in ticket.flags else "on file"
    name = f"{escape(ticket.requester_name)} " if ticket.requester_name else ""
    return f"*Requester*\n{name}{escape(ticket.requester or 'unknown')}\n{on_file}"


def change_lines(facts: CardFacts) -> list[str]:
    """The change as before \u2192 after: what approval did, or what the host asks against the registry now."""
    if facts.change is not None:
        keys = sorted(set(facts.change.before) | set(facts.change.after))
        return ["*Changed*"] + [arrow(k, facts.change.before.get(k), facts.change.after.get(k)) for k in keys]
    requested = requested_lines(facts)
    lines = ["*Requested change*", *requested] if requested else []
    if facts.ticket.missing:
        lines.append(f"*Still missing:* {escape(', '.join(facts.ticket.missing))}")
    return lines


def requested_lines(facts: CardFacts) -> list[str]:
    ticket, fields = facts.ticket, facts.ticket.fields or {}
    if fields.get("changes"):
        target: Any = facts.host if ticket.kind == TicketKind.ACCOUNT_UPDATE else facts.event
        return [arrow(k, current_value(target, k, ticket), v) for k, v in fields["changes"].items()]
    if ticket.kind == TicketKind.CERTIFICATE_COUNT and "count" in fields:
        before = facts.event.certificates_issued if facts.event else None
        return [arrow("certificates issued", before, fields["count"])]
    if ticket.kind == TicketKind.EVENT_CANCEL and facts.event is not None:
        return [arrow("event status", facts.event.status.value, "cancelled")]
    if fields.get("person"):
        verb = "remove the login of" if ticket.kind == TicketKind.USER_REMOVE else "person"
        line = f"\u2022 {verb}: {person(fields['person'])}"
        if fields.get("username"):
            line += f" (username `{escape(str(fields['username']))}`)"
        return [line]
    return []


def current_value(target: Host | Event | None, key: str, ticket: Ticket) -> Any:
    if target is None:
        return None
    if key == "email":  # an account update's "email" is the requester's own user address
        return ticket.requester
    if key == "location" and isinstance(target, Event):
        return target.location
    return getattr(target, key, None)


def arrow(key: str, before: Any, after: Any) -> str:
    return f"\u2022 {escape(key.replace('_', ' '))}: {escape(show(before))} \u2192 {escape(show(after))}"


def show(value: Any) -> str:
    if value is None or value == "":
        return "(blank)"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {show(v)}" for k, v in value.items() if v not in (None, ""))
    return fold(str(value), 300)


def person(value: Any) -> str:
    if not isinstance(value, dict):
        return escape(show(value))
    parts = [value.get("name") or "", f"<{value['email']}>" if value.get("email") else "", value.get("phone") or ""]
    return escape(" ".join(p for p in parts if p) or "(nobody named)")


def flag_lines(ticket: Ticket) -> list[str]:
    lines = []
    for flag in ticket.flags:
        if flag.startswith("hint:"):
            lines.append(f":bulb: hint: {escape(flag[5:].strip())}")
        else:
            lines.append(FLAG_LABELS.get(flag, escape(flag.replace("_", " "))))
    if ticket.confidence < LOW_CONFIDENCE:
        lines.append(f":grey_question: low confidence in the reading ({ticket.confidence:.2f})")
    return lines


def attachment_line(attachment: Attachment) -> str:
    name = escape(fold(attachment.filename or "(unnamed)", 120))
    return f"\u2022 {name} ({escape(attachment.content_type)}, {size(attachment.size)})"


def history_line(ticket: Ticket, tz: ZoneInfo) -> str:
    parts = [f"Received {when(ticket.created_at, tz)}"]
    if ticket.assigned_to:
        parts.append(f"assigned to {escape(ticket.assigned_to)}")
    if ticket.decided_by and ticket.status not in OPEN_STATUSES:
        parts.append(f"{ticket.status.value} by {escape(ticket.decided_by)} {when(ticket.decided_at, tz)}")
    parts.append(f"updated {when(ticket.updated_at, tz)}")
    return " \u00b7 ".join(parts)


def buttons(ticket: Ticket) -> list[dict[str, Any]]:
    """The decisions still open: none once decided, only Undo for a count recorded automatically."""
    value = str(ticket.number)
    if ticket.status == TicketStatus.APPROVED and ticket.decided_by == AUTOMATIC_ACTOR:
        return [button("Undo", UNDO, value, confirm=("Undo this count?",
                                                      "The recorded count is removed and the ticket opens again."))]
    if ticket.status not in OPEN_STATUSES:
        return []
    return [
        button("Approve", APPROVE, value, style="primary",
               confirm=("Approve?", "The change is applied to the registry and the host is emailed.")),
        button("Edit & approve", EDIT_APPROVE, value),
        button("Reject", REJECT, value, style="danger"),
        button("Ask host", ASK_HOST, value),
        button("Assign to me", ASSIGN, value),
        button("Reply to host", REPLY, value),
    ]


def button(label: str, action_id: str, value: str, style: str | None = None,
           confirm: tuple[str, str] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "action_id": action_id, "value": value,
                               "text": {"type": "plain_text", "text": label}}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = {"title": {"type": "plain_text", "text": confirm[0]},
                              "text": {"type": "plain_text", "text": confirm[1]},
                              "confirm": {"type": "plain_text", "text": "Yes"},
                              "deny": {"type": "plain_text", "text": "Cancel"}}
    return element
