"""Plain-data views of tickets and events, shared by the command line and Slack."""

from __future__ import annotations

from typing import Any

from storage.registry import Event
from storage.tickets import Message, Ticket


def ticket_summary(ticket: Ticket, message_count: int) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "kind": ticket.kind.value,
        "status": ticket.status.value,
        "host_id": ticket.host_id,
        "event_id": ticket.event_id,
        "requester": ticket.requester,
        "subject": ticket.subject,
        "created_at": ticket.created_at.isoformat(),
        "messages": message_count,
    }


def message_view(message: Message) -> dict[str, Any]:
    return {
        "direction": message.direction.value,
        "message_id": message.message_id,
        "subject": message.subject,
        "from": message.from_addr,
        "date": (message.date or message.received_at).isoformat(),
        "text": message.new_text,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
            for a in message.attachments
        ],
    }


def ticket_detail(ticket: Ticket) -> dict[str, Any]:
    view = ticket_summary(ticket, len(ticket.messages))
    view.update(
        {
            "messages": [message_view(m) for m in ticket.messages],
            "fields": ticket.fields,
            "missing": ticket.missing,
            "flags": ticket.flags,
            "confidence": ticket.confidence,
            "reason": ticket.reason,
            "assigned_to": ticket.assigned_to,
            "decided_by": ticket.decided_by,
            "audit": [
                {
                    "at": entry.at.isoformat(),
                    "actor": entry.actor,
                    "action": entry.action,
                    "before": entry.before,
                    "after": entry.after,
                    "detail": entry.detail,
                }
                for entry in ticket.audit
            ],
        }
    )
    return view


def event_view(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "host_id": event.host_id,
        "title": event.title,
        "instructor": event.instructor,
        "description": event.description,
        "categories": event.categories,
        "start_date": event.start_date.isoformat(),
        "end_date": event.end_date.isoformat(),
        "online": event.online,
        "city": event.city,
        "zip": event.zip,
        "state": event.state,
        "location": event.location,
        "hours": str(event.hours),
        "certificates_issued": event.certificates_issued,
        "status": event.status.value,
    }
