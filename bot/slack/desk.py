"""Staff actions from Slack, each one transaction around a function of ``workflows.decisions`` or ``newsletter``.

These are plain blocking functions (the listeners run them with ``asyncio.to_thread``) that tests can
call directly. None of them keeps state in memory: a double click or a redelivered request is made
harmless by the conditional state change inside ``workflows.decisions``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.slack.editions import Draft, draft_problems
from bot.slack.people import Names, StaffDirectory
from storage.enums import MailingKind, MailingStatus, TicketKind
from storage.mailouts import Mailing, find_mailing
from storage.tickets import Ticket
from workflows import decisions
from workflows.decisions import Decision, DecisionError, Verdict
from workflows.newsletter import EditionError, approve_edition, prepare_edition
from workflows.policy import MailboxPolicy
from workflows.staff import StaffPost, post_to_staff

logger = logging.getLogger(__name__)


@dataclass
class Desk:
    """What the listeners share: the database, the mailbox, the staff channel and who may act."""

    sessions: sessionmaker[Session]
    policy: MailboxPolicy
    channel: str
    staff: StaffDirectory
    names: Names
    on_change: Callable[[], None] = field(default=lambda: None)  # wakes outbox delivery in this process

    @property
    def tz(self) -> ZoneInfo:
        return self.policy.timezone


@dataclass(frozen=True)
class Result:
    """How an action went, and what to tell the person who took it (empty when the card says it all)."""

    changed: bool
    message: str = ""


def decide(sessions: sessionmaker[Session], number: int, call: Callable[[Session], Decision],
           after: Callable[[Session, Ticket, Decision], None] | None = None) -> Result:
    """Run one decision in its own transaction; ``after`` adds to it (a thread line) when something changed."""
    with sessions() as session:
        try:
            decision = call(session)
        except DecisionError as exc:
            session.rollback()
            return Result(False, f"Nothing was changed: {exc}.")
        if decision.verdict == Verdict.ALREADY_DECIDED:
            session.rollback()
            return Result(False, already_decided(session, number))
        if after is not None:
            after(session, decisions.load_ticket(session, number), decision)
        session.commit()
    return Result(True)


def already_decided(session: Session, number: int) -> str:
    ticket = session.get(Ticket, Ticket.id_for_number(number))
    if ticket is None:
        return f"There is no ticket PDU-{number}."
    by = f" by {ticket.decided_by}" if ticket.decided_by else ""
    return f"{ticket.tag} is already {ticket.status.value.replace('_', ' ')}{by}; nothing was changed."


def thread_line(text: str) -> Callable[[Session, Ticket, Decision], None]:
    """An ``after`` step that tells the card's thread who did what."""
    def add(session: Session, ticket: Ticket, decision: Decision) -> None:
        post_to_staff(session, StaffPost.THREAD, ticket, text=text)

    return add


def approve(desk: Desk, number: int, actor: str, edits: dict[str, Any] | None = None) -> Result:
    def after(session: Session, ticket: Ticket, decision: Decision) -> None:
        # approve() says "Approved by ..." in the thread when it changes the registry; a kind with
        # nothing to apply is only closed, and the thread should still say who closed it.
        if decision.summary == "closed":
            post_to_staff(session, StaffPost.THREAD, ticket, text=f"Closed by {actor}")

    return decide(desk.sessions, number,
                  lambda s: decisions.approve(s, desk.policy, number, actor, edits=edits), after)


def reject(desk: Desk, number: int, actor: str, reason: str) -> Result:
    return decide(desk.sessions, number, lambda s: decisions.reject(s, desk.policy, number, actor, reason))


def ask_host(desk: Desk, number: int, actor: str, question: str) -> Result:
    return decide(desk.sessions, number, lambda s: decisions.ask_host(s, desk.policy, number, actor, question),
                  thread_line(f"{actor} asked the host; the ticket waits for their answer"))


def reply_to_host(desk: Desk, number: int, actor: str, text: str) -> Result:
    return decide(desk.sessions, number, lambda s: decisions.reply_to_host(s, desk.policy, number, actor, text),
                  thread_line(f"{actor} replied to the host"))


def assign(desk: Desk, number: int, actor: str) -> Result:
    """Assign the ticket to ``actor``; assigning it again to the same person changes nothing."""
    with desk.sessions() as session:
        try:
            ticket = decisions.load_ticket(session, number)
        except DecisionError as exc:
            return Result(False, f"Nothing was changed: {exc}.")
        if ticket.assigned_to == actor:
            return Result(False, f"{ticket.tag} is already assigned to you.")
        decisions.assign(session, number, actor)
        post_to_staff(session, StaffPost.THREAD, ticket, text=f"Assigned to {actor}")
        session.commit()
    return Result(True)


def undo(desk: Desk, number: int, actor: str) -> Result:
    return decide(desk.sessions, number, lambda s: decisions.undo(s, number, actor))


def ticket_in_thread(sessions: sessionmaker[Session], thread_ts: str) -> int | None:
    """The number of the ticket whose card starts the thread ``thread_ts``."""
    with sessions() as session:
        ticket = session.scalar(sa.select(Ticket).where(Ticket.slack_ts == thread_ts).limit(1))
        return ticket.number if ticket is not None else None


def keep_note(desk: Desk, thread_ts: str, actor: str, text: str, ref: str) -> bool:
    """Keep a message from a card's thread as an internal note; False when it is not a ticket's thread."""
    number = ticket_in_thread(desk.sessions, thread_ts)
    if number is None or not text.strip():
        return False
    with desk.sessions() as session:
        # Lock first (the ticket's row on PostgreSQL, the write lock on SQLite), so a redelivery arriving
        # at the same moment waits for this commit and then finds the note instead of adding its own.
        session.execute(sa.update(Ticket).where(Ticket.id == Ticket.id_for_number(number))
                        .values(updated_at=Ticket.updated_at))
        kept = decisions.add_note(session, number, actor, text, ref=ref)
        session.commit()
    return kept


@dataclass(frozen=True)
class Editable:
    """What "Edit & approve" shows staff to correct: the reading of the ticket."""

    number: int
    kind: TicketKind
    host_id: str
    event_id: str
    fields: dict[str, Any]


def editable(sessions: sessionmaker[Session], number: int) -> Editable | None:
    with sessions() as session:
        ticket = session.get(Ticket, Ticket.id_for_number(number))
        if ticket is None:
            return None
        return Editable(number, ticket.kind, ticket.host_id or "", ticket.event_id or "", dict(ticket.fields or {}))


def schedule_edition(desk: Desk, edition_key: str, actor: str, send_at: dt.datetime) -> Result:
    """Approve a PLP Insider edition from its Slack preview and schedule it."""
    with desk.sessions() as session:
        try:
            approve_edition(session, edition_key, actor, send_at)
        except EditionError as exc:
            session.rollback()
            return Result(False, f"Nothing was changed: {exc}.")
        session.commit()
    return Result(True, f"Edition {edition_key} is scheduled for {send_at.astimezone(desk.tz):%b %-d at %H:%M %Z}.")


def edition_problems(sessions: sessionmaker[Session], draft: Draft) -> dict[str, str]:
    """Why ``draft`` cannot be prepared, by the modal block it concerns; empty when it can.

    Checked before the modal is acknowledged, so the mistake shows beside its input. An approved or sent
    edition only changes under a new key, as ``prepare_edition`` decides again when it runs.
    """
    problems = draft_problems(draft)
    if problems:
        return problems
    with sessions() as session:
        mailing = find_mailing(session, MailingKind.INSIDER, draft.key)
        if mailing is None or mailing.status == MailingStatus.DRAFT or is_unchanged(mailing, draft):
            return {}
        return {"key": f"Edition {draft.key} is already {mailing.status.value}; use a new edition key."}


def is_unchanged(mailing: Mailing, draft: Draft) -> bool:
    return mailing.source == draft.markdown and mailing.subject == draft.subject


def prepare_newsletter(desk: Desk, draft: Draft, actor: str) -> Result:
    """Render and store a PLP Insider edition staff wrote in Slack; its preview reaches the channel via the outbox.

    The same text again changes nothing, so a double submission or a redelivered event posts one preview.
    """
    problems = draft_problems(draft)
    if problems:
        return Result(False, "Nothing was prepared: " + " ".join(problems.values()))
    with desk.sessions() as session:
        mailing = find_mailing(session, MailingKind.INSIDER, draft.key)
        if mailing is not None and is_unchanged(mailing, draft):
            return Result(False, f"Edition {draft.key} ({mailing.status.value}) already has this subject and "
                                 "text; nothing was changed.")
        try:
            prepare_edition(session, draft.markdown, draft.key, draft.subject, desk.policy, actor)
        except EditionError as exc:
            session.rollback()
            return Result(False, f"Nothing was prepared: {exc}.")
        session.commit()
    logger.info("edition %s prepared from Slack by %s", draft.key, actor)
    return Result(True, f"Edition {draft.key} is prepared: \u201c{draft.subject}\u201d. Its preview, with the "
                        "button to approve and schedule it, follows in the staff channel.")
