"""What ``/pdu`` answers: a ticket, host or event found by number, id or name, or this month's numbers."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot.slack.cards import STATUS_LABELS, kind_label
from bot.slack.home import ticket_line
from bot.slack.text import escape, fold, when
from storage.enums import OPEN_STATUSES
from storage.registry import Event, Host
from storage.tickets import Ticket
from workflows.desk import Found, find, month_figures, tickets_about
from workflows.formatting import format_dates, format_pdus
from workflows.staff_report import hours

USAGE = ("`/pdu PDU-1042` or `/pdu 1042` shows a ticket, `/pdu H0001` or `/pdu great falls` a host, "
         "`/pdu E10001` or `/pdu math night` an event, `/pdu stats` this month's numbers, and "
         "`/pdu newsletter` writes a PLP Insider edition.")


def answer(session: Session, text: str, now: dt.datetime, tz: ZoneInfo) -> dict[str, Any]:
    """The ephemeral response to ``/pdu text``: ``text`` and ``blocks`` for respond()."""
    query = text.strip()
    if not query or query.lower() == "help":
        return {"text": USAGE}
    if query.lower() == "stats":
        return stats(session, now, tz)
    found = find(session, query)
    if found.empty:
        return {"text": f"Nothing matches \u201c{escape(fold(query, 80))}\u201d. {USAGE}"}
    return {"text": f"Results for {escape(fold(query, 80))}", "blocks": found_blocks(session, found, now, tz)}


def found_blocks(session: Session, found: Found, now: dt.datetime, tz: ZoneInfo) -> list[dict[str, Any]]:
    blocks = [ticket_section(t, tz) for t in found.tickets]
    blocks += [host_section(session, h, now) for h in found.hosts]
    blocks += [event_section(session, e, now) for e in found.events]
    return blocks[:45]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}


def ticket_section(ticket: Ticket, tz: ZoneInfo) -> dict[str, Any]:
    lines = [f"*{ticket.tag}* \u00b7 {kind_label(ticket.kind)} \u00b7 {STATUS_LABELS[ticket.status]}",
             f"From {escape(ticket.requester or 'unknown')} \u00b7 {escape(fold(ticket.subject, 120))}",
             f"Received {when(ticket.created_at, tz)}"]
    if ticket.assigned_to:
        lines.append(f"Assigned to {escape(ticket.assigned_to)}")
    if ticket.decided_by:
        lines.append(f"Decided by {escape(ticket.decided_by)} {when(ticket.decided_at, tz)}")
    if ticket.slack_ts:
        lines.append("The card's thread has the whole story.")
    return section("\n".join(lines))


def host_section(session: Session, host: Host, now: dt.datetime) -> dict[str, Any]:
    tickets = tickets_about(session, host_id=host.host_id)
    open_count = sum(t.status in OPEN_STATUSES for t in tickets)
    text = (f"*{escape(host.name)}* (`{escape(host.host_id)}`) \u00b7 {host.kind.value} events \u00b7 "
            f"{escape(host.status)}\n"
            f"Contact {escape(host.contact_name or 'unknown')} {escape(host.contact_email)} "
            f"{escape(host.contact_phone or host.phone)}\n{open_count} open of the latest {len(tickets)} tickets")
    if tickets:
        text += "\n" + "\n".join(ticket_line(t, now) for t in tickets[:5])
    return section(text)


def event_section(session: Session, event: Event, now: dt.datetime) -> dict[str, Any]:
    count = "blank" if event.certificates_issued is None else str(event.certificates_issued)
    tickets = tickets_about(session, event_id=event.event_id)
    text = (f"*{escape(event.title)}* (`{escape(event.event_id)}`), host `{escape(event.host_id)}`\n"
            f"{format_dates(event.start_date, event.end_date)} \u00b7 {format_pdus(event.hours)} PDUs \u00b7 "
            f"{escape(event.location or 'no location')} \u00b7 {event.status.value} \u00b7 "
            f"certificates issued: {count}")
    if tickets:
        text += "\n" + "\n".join(ticket_line(t, now) for t in tickets[:5])
    return section(text)


def stats(session: Session, now: dt.datetime, tz: ZoneInfo) -> dict[str, Any]:
    figures = month_figures(session, now, tz)
    lines = [f"*{figures.label} so far*: {figures.ticket_total} tickets, {len(figures.decision_hours)} decided, "
             f"median time to decision {hours(figures.median_hours)}"]
    for kind, counts in sorted(figures.tickets.items()):
        by_status = ", ".join(f"{status.replace('_', ' ')} {n}" for status, n in sorted(counts.items()))
        lines.append(f"\u2022 {kind.replace('_', ' ')}: {sum(counts.values())} ({by_status})")
    lines.append(f"Certificate counts overdue: {figures.overdue_total} events across "
                 f"{len(figures.overdue_by_host)} hosts")
    return {"text": lines[0], "blocks": [section("\n".join(lines))]}
