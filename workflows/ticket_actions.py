"""The small actions every workflow takes on a ticket: record them in the audit log, move the ticket
along its allowed transitions, and answer the host automatically without ever looping with a robot."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.base import utcnow
from storage.enums import TicketStatus, can_move
from storage.outbox import standing
from storage.tickets import AuditEntry, Message, Ticket
from workflows.outgoing import Draft, queue_email
from workflows.policy import MailboxPolicy

SYSTEM_ACTOR = "pdubot"
INSERT_AUDIT = sa.insert(AuditEntry.__table__)
ACK_KIND = "ack"


def audit(
    session: Session,
    ticket: Ticket | None,
    action: str,
    actor: str = SYSTEM_ACTOR,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str = "",
) -> None:
    """Append who did what, with before and after values. Audit rows are never updated or deleted."""
    append_audit(session, audit_row(ticket.id if ticket else None, action, actor, before, after, detail))


def append_audit(session: Session, row: dict[str, Any]) -> None:
    """Write an audit entry at once, as a plain row in the caller's transaction. Nothing reads one back as an
    object before it commits, and its ticket is already stored (it has an id), so it need not wait for a flush:
    the ORM's bookkeeping for it cost more than the INSERT, on every message intake answers."""
    session.connection().execute(INSERT_AUDIT, row)


def audit_row(
    ticket_id: int | None,
    action: str,
    actor: str = SYSTEM_ACTOR,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """The columns of one audit entry, for ``audit`` and for intake's batched inserts alike."""
    return {
        "ticket_id": ticket_id,
        "at": utcnow(),
        "actor": actor[:200],  # an actor names a sender, and a valid address can be long
        "action": action,
        "before": before or {},
        "after": after or {},
        "detail": detail,
    }


def status_row(ticket_id: int, before: TicketStatus, target: TicketStatus, actor: str, detail: str = "") -> dict[str, Any]:
    """The audit entry of a move from ``before`` to ``target``."""
    return audit_row(ticket_id, "status", actor, {"status": before.value}, {"status": target.value}, detail)


def move_ticket(session: Session, ticket: Ticket, target: TicketStatus, actor: str, detail: str = "") -> bool:
    """Move ``ticket`` to ``target`` when the transition table allows it, and audit the move."""
    if ticket.status == target or not can_move(ticket.status, target):
        return False
    append_audit(session, status_row(ticket.id, ticket.status, target, actor, detail))
    ticket.status = target
    return True


def may_acknowledge(session: Session, policy: MailboxPolicy, address: str) -> bool:
    """Never answer the mailbox itself, an undeliverable address, or a sender already answered often this hour."""
    if not address or address in policy.addresses:
        return False
    recent, suppressed = standing(session, address, ACK_KIND, utcnow() - dt.timedelta(hours=1))
    return not suppressed and recent < policy.ack_limit_per_hour


def ack_key(message_pk: int) -> str:
    """An inbound message is answered automatically at most once: its answer's outbox row is unique by this key."""
    return f"ack:{message_pk}"


def queue_acknowledgement(
    session: Session, policy: MailboxPolicy, ticket: Ticket, message: Message, template: str, context: dict[str, Any]
) -> bool:
    """An automatic answer to ``message`` (RFC 3834 auto-replied), at most one per inbound message."""
    if not may_acknowledge(session, policy, message.from_addr):
        audit(session, ticket, "ack_skipped", detail=f"no automatic answer to {message.from_addr or 'no sender'}")
        return False
    draft = Draft(
        to=message.from_addr,
        subject=message.subject,
        template=template,
        context={"name": message.from_name, **context},
        kind=ACK_KIND,
        parent=message,
        auto_submitted="auto-replied",
        dedupe_key=ack_key(message.id),
    )
    queue_email(session, policy, draft, ticket)
    return True
