"""The morning digest for the staff channel: tickets that have waited on staff more than a few business days."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot.slack.cards import kind_label
from bot.slack.text import fold
from workflows.desk import Waiting, waiting_on_staff
from workflows.staff import StaffPost, post_to_staff


def digest_line(waiting: Waiting) -> str:
    ticket = waiting.ticket
    who = ticket.requester_name or ticket.requester or "unknown sender"
    return (f"- {ticket.tag} {kind_label(ticket.kind).lower()} from {who}: {fold(ticket.subject, 80)} "
            f"({waiting.business_days} business days)")


def queue_digest(session: Session, now: dt.datetime, tz: ZoneInfo, more_than_days: int) -> int:
    """Queue today's digest as a staff notice (once a day); returns how many tickets it names. The caller commits.

    The text is plain: the Slack deliverer escapes it, since subjects and names come from email.
    """
    waiting = waiting_on_staff(session, now, tz, more_than_days)
    if not waiting:
        return 0
    today = now.astimezone(tz).date()
    text = (f"Good morning. {len(waiting)} ticket{'s have' if len(waiting) != 1 else ' has'} waited for staff "
            f"more than {more_than_days} business days:\n" + "\n".join(digest_line(w) for w in waiting))
    post_to_staff(session, StaffPost.NOTICE, text=text, dedupe_key=f"staff-digest:{today.isoformat()}")
    return len(waiting)
