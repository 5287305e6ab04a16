"""What staff do to a ticket: approve (optionally with edits), reject, ask the host, assign, reply, note, undo.

Slack buttons and ``pdubot tickets approve|reject`` call these same functions. Each decision is a
conditional state change in the database (``UPDATE ... WHERE status IN (...)``), so a double click, two
staff at once or a redelivered Slack request changes the registry once and emails the host once.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.base import utcnow
from storage.changes import ChangeRecord
from storage.enums import OPEN_STATUSES, TicketKind, TicketStatus
from storage.registry import Event
from storage.tickets import Message, Ticket
from workflows.certificates import render_certificate
from workflows.ticket_actions import audit, move_ticket
from workflows.kinds import spec_for
from workflows.kinds.base import Outcome
from workflows.outgoing import Draft, queue_email
from workflows.policy import MailboxPolicy
from workflows.staff import StaffPost, post_to_staff

DECIDABLE = tuple(OPEN_STATUSES)
EDITABLE_FIELDS = frozenset({"fields", "host_id", "event_id", "kind"})


class DecisionError(Exception):
    """A decision that cannot be made as asked: the ticket is missing, or its change cannot be applied."""


class Verdict(str, enum.Enum):
    DONE = "done"
    ALREADY_DECIDED = "already_decided"


@dataclass(frozen=True)
class Decision:
    number: int
    verdict: Verdict
    status: TicketStatus
    summary: str = ""


def load_ticket(session: Session, number: int) -> Ticket:
    ticket = session.get(Ticket, Ticket.id_for_number(number))
    if ticket is None:
        raise DecisionError(f"there is no ticket PDU-{number}")
    return ticket


def claim_decision(session: Session, ticket: Ticket, target: TicketStatus, actor: str) -> bool:
    """Move an undecided ticket to ``target`` exactly once; False when someone else already decided it."""
    result = session.execute(
        sa.update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.status.in_(DECIDABLE))
        .values(status=target, decided_by=actor, decided_at=utcnow(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    before = ticket.status
    session.refresh(ticket)
    audit(session, ticket, "status", actor, {"status": before.value}, {"status": target.value})
    return True


def latest_inbound(session: Session, ticket: Ticket) -> Message | None:
    return session.scalar(
        sa.select(Message).where(Message.ticket_id == ticket.id, Message.direction == "in").order_by(Message.id.desc()).limit(1)
    )


def email_host(
    session: Session, policy: MailboxPolicy, ticket: Ticket, template: str, kind: str, **context: Any
) -> None:
    """Write to the ticket's requester, threaded under their latest message."""
    if not ticket.requester:
        return
    attachments = context.pop("attachments", ())
    draft = Draft(
        to=ticket.requester,
        subject=ticket.subject,
        template=template,
        context={"name": ticket.requester_name, **context},
        kind=kind,
        parent=latest_inbound(session, ticket),
        attachments=tuple(attachments),
    )
    queue_email(session, policy, draft, ticket)
    post_to_staff(session, StaffPost.THREAD, ticket, text=f"Emailed {ticket.requester}: {kind.replace('_', ' ')}")


def apply_edits(session: Session, ticket: Ticket, edits: dict[str, Any], actor: str) -> None:
    """Staff corrections before approval ("Edit & approve"), audited with before and after."""
    unknown = set(edits) - EDITABLE_FIELDS
    if unknown:
        raise DecisionError(f"cannot edit {', '.join(sorted(unknown))}")
    before = {key: _plain(getattr(ticket, key)) for key in edits}
    for key, value in edits.items():
        setattr(ticket, key, TicketKind(value) if key == "kind" else value)
    ticket.missing = []
    audit(session, ticket, "edited", actor, before, {key: _plain(getattr(ticket, key)) for key in edits})


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def record_change(session: Session, ticket: Ticket, outcome: Outcome, actor: str) -> None:
    """The change log staff use to update PDUPS, and the ticket's own before/after audit."""
    session.add(
        ChangeRecord(
            ticket_id=ticket.id,
            actor=actor,
            entity=outcome.entity,
            entity_id=outcome.entity_id,
            action=outcome.action,
            before=outcome.before,
            after=outcome.after,
            summary=outcome.summary,
        )
    )
    audit(session, ticket, "applied", actor, outcome.before, outcome.after, outcome.summary)


def approve(
    session: Session, policy: MailboxPolicy, number: int, actor: str, edits: dict[str, Any] | None = None,
    notify_host: bool = True,
) -> Decision:
    """Apply the ticket's change once, record it, and email the host. The caller commits."""
    ticket = load_ticket(session, number)
    if ticket.status not in DECIDABLE:
        return Decision(number, Verdict.ALREADY_DECIDED, ticket.status)
    if edits:
        apply_edits(session, ticket, edits, actor)
    spec = spec_for(ticket.kind)
    target = TicketStatus.APPROVED if spec.apply else TicketStatus.CLOSED
    if not claim_decision(session, ticket, target, actor):
        return Decision(number, Verdict.ALREADY_DECIDED, ticket.status)
    if spec.apply is None:
        post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
        return Decision(number, Verdict.DONE, target, "closed")
    try:
        with session.begin_nested():
            outcome = spec.apply(session, ticket, actor)
    except (LookupError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecisionError(f"PDU-{number} cannot be applied: {exc}") from exc
    record_change(session, ticket, outcome, actor)
    if notify_host:
        certificate = certificate_for(session, ticket, outcome)
        email_host(session, policy, ticket, "approved", "approved", summary=outcome.summary, note="",
                   attachments=certificate, certificate_attached=bool(certificate))
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
    post_to_staff(session, StaffPost.THREAD, ticket, text=f"Approved by {actor}: {outcome.summary}")
    return Decision(number, Verdict.DONE, target, outcome.summary)


def certificate_for(session: Session, ticket: Ticket, outcome: Outcome) -> list[tuple[str, str, bytes]]:
    """The regenerated certificate, when an approved edit changed an event that has issued certificates."""
    if ticket.kind != TicketKind.EVENT_EDIT or outcome.entity != "event":
        return []
    event = session.get(Event, outcome.entity_id)
    if event is None or not event.certificates_issued:
        return []
    return [(f"certificate-{event.event_id}.pdf", "application/pdf", render_certificate(event))]


def reject(session: Session, policy: MailboxPolicy, number: int, actor: str, reason: str) -> Decision:
    """Decide against the request and email the reason to the host. The caller commits."""
    ticket = load_ticket(session, number)
    if not reason.strip():
        raise DecisionError("a rejection needs a reason for the host")
    if not claim_decision(session, ticket, TicketStatus.REJECTED, actor):
        return Decision(number, Verdict.ALREADY_DECIDED, ticket.status)
    audit(session, ticket, "rejected", actor, detail=reason)
    email_host(session, policy, ticket, "rejected", "rejected", reason=reason.strip())
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
    post_to_staff(session, StaffPost.THREAD, ticket, text=f"Rejected by {actor}")
    return Decision(number, Verdict.DONE, TicketStatus.REJECTED, reason)


def ask_host(session: Session, policy: MailboxPolicy, number: int, actor: str, question: str) -> Decision:
    """Email the host a question; the ticket waits until they answer."""
    ticket = load_ticket(session, number)
    if not question.strip():
        raise DecisionError("the question is empty")
    if ticket.status not in DECIDABLE:
        return Decision(number, Verdict.ALREADY_DECIDED, ticket.status)
    move_ticket(session, ticket, TicketStatus.WAITING_ON_HOST, actor, question)
    email_host(session, policy, ticket, "question", "question", question=question.strip())
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
    return Decision(number, Verdict.DONE, ticket.status, question)


def reply_to_host(session: Session, policy: MailboxPolicy, number: int, actor: str, text: str) -> Decision:
    """A staff-written email to the host, threaded to the conversation; the status does not change."""
    ticket = load_ticket(session, number)
    if not text.strip():
        raise DecisionError("the reply is empty")
    audit(session, ticket, "replied", actor, detail=text)
    email_host(session, policy, ticket, "staff_reply", "staff_reply", text=text.strip())
    return Decision(number, Verdict.DONE, ticket.status, text)


def assign(session: Session, number: int, actor: str) -> Decision:
    ticket = load_ticket(session, number)
    before = ticket.assigned_to
    ticket.assigned_to = actor
    audit(session, ticket, "assigned", actor, {"assigned_to": before}, {"assigned_to": actor})
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
    return Decision(number, Verdict.DONE, ticket.status, actor)


def add_note(session: Session, number: int, actor: str, text: str, ref: str = "") -> bool:
    """A staff remark kept on the ticket; never shown to the host.

    ``ref`` names where the remark came from (a Slack message), so a redelivered one is kept once.
    """
    ticket = load_ticket(session, number)
    if ref and any(entry.action == "note" and entry.after.get("ref") == ref for entry in ticket.audit):
        return False
    audit(session, ticket, "note", actor, after={"ref": ref} if ref else None, detail=text)
    return True


def undo(session: Session, number: int, actor: str) -> Decision:
    """Reverse an applied change (an automatically recorded count) and put the ticket back before staff."""
    ticket = load_ticket(session, number)
    result = session.execute(
        sa.update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.status == TicketStatus.APPROVED)
        .values(status=TicketStatus.OPEN, decided_by=None, decided_at=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return Decision(number, Verdict.ALREADY_DECIDED, ticket.status)
    session.refresh(ticket)
    change = session.scalar(
        sa.select(ChangeRecord).where(ChangeRecord.ticket_id == ticket.id).order_by(ChangeRecord.id.desc()).limit(1)
    )
    if change is not None:
        _restore(session, change)
        session.add(
            ChangeRecord(ticket_id=ticket.id, actor=actor, entity=change.entity, entity_id=change.entity_id,
                         action="undo", before=change.after, after=change.before, summary=f"Undid: {change.summary}")
        )
    audit(session, ticket, "undone", actor, {"status": "approved"}, {"status": "open"})
    post_to_staff(session, StaffPost.CARD_UPDATE, ticket)
    post_to_staff(session, StaffPost.THREAD, ticket, text=f"Undone by {actor}; the ticket is open again")
    return Decision(number, Verdict.DONE, TicketStatus.OPEN)


def _restore(session: Session, change: ChangeRecord) -> None:
    if change.entity == "event" and change.action == "count":
        event = session.get(Event, change.entity_id)
        if event is not None:
            event.certificates_issued = change.before.get("certificates_issued")
        return
    raise DecisionError(f"undo is only for recorded certificate counts, not {change.action} of a {change.entity}")


def changes_since(session: Session, since: dt.datetime) -> list[ChangeRecord]:
    return list(session.scalars(sa.select(ChangeRecord).where(ChangeRecord.at >= since).order_by(ChangeRecord.id)))
