"""The App Home tab: open tickets by status and age (the viewer's own first) and overdue certificate counts by host."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot.slack.cards import STATUS_LABELS, kind_label
from bot.slack.text import age, escape, fold
from storage.enums import TicketStatus
from storage.tickets import Ticket
from workflows.desk import open_tickets, overdue_by_host
from workflows.formatting import format_date

SECTION_LIMIT = 2800  # under Slack's 3,000 characters per section
STATUS_ORDER = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.WAITING_ON_HOST, TicketStatus.NEEDS_INFO,
                TicketStatus.AWAITING_CONFIRMATION)


def assigned_to(ticket: Ticket, user_id: str) -> bool:
    """Slack actors are recorded as ``slack:U123 (Name)``, so the ID prefix identifies the person."""
    return bool(ticket.assigned_to) and (ticket.assigned_to == f"slack:{user_id}"
                                         or ticket.assigned_to.startswith(f"slack:{user_id} "))


def ticket_line(ticket: Ticket, now: dt.datetime) -> str:
    who = escape(fold(ticket.requester_name or ticket.requester or "unknown", 40))
    return (f"\u2022 *{ticket.tag}* {kind_label(ticket.kind).lower()} \u00b7 {age(ticket.created_at, now)} \u00b7 "
            f"{who} \u00b7 {escape(fold(ticket.subject, 60))}")


def listing(title: str, lines: list[str], empty: str = "") -> dict[str, Any] | None:
    """One section of lines, cut short (with a count of the rest) to stay within Slack's limit."""
    if not lines and not empty:
        return None
    text, shown = f"*{title}* ({len(lines)})", 0
    for line in lines:
        if len(text) + len(line) + 40 > SECTION_LIMIT:
            break
        text += "\n" + line
        shown += 1
    if shown < len(lines):
        text += f"\n\u2026 and {len(lines) - shown} more"
    if not lines:
        text += f"\n{empty}"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def home_view(session: Session, user_id: str, now: dt.datetime, tz: ZoneInfo) -> dict[str, Any]:
    tickets = open_tickets(session)
    mine = [t for t in tickets if assigned_to(t, user_id)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "PDUPS mailbox"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"{len(tickets)} open tickets \u00b7 updated {now.astimezone(tz):%b %-d, %H:%M %Z}")}]},
    ]
    sections = [listing("Assigned to you", [ticket_line(t, now) for t in mine], "Nothing assigned to you.")]
    others = [t for t in tickets if t not in mine]
    for status in STATUS_ORDER:
        sections.append(listing(STATUS_LABELS[status], [ticket_line(t, now) for t in others if t.status == status]))
    sections.append({"type": "divider"})
    sections.append(overdue_section(session, now.astimezone(tz).date()))
    blocks += [s for s in sections if s is not None]
    return {"type": "home", "blocks": blocks}


def overdue_section(session: Session, today: dt.date) -> dict[str, Any] | None:
    rows = overdue_by_host(session, today)
    lines = [f"\u2022 {escape(str(r['name']))} (`{escape(str(r['host_id']))}`): {r['count']} "
             f"event{'s' if r['count'] != 1 else ''}, oldest ended {format_date(r['oldest'])}"  # type: ignore[arg-type]
             for r in rows]
    return listing("Certificate counts overdue, by host", lines, "None overdue.")


def staff_only_view() -> dict[str, Any]:
    return {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": (
        "This app is for OPI Professional Learning staff. Ask the team if you need access.")}}]}
