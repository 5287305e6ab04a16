"""Tell staff: queue a post for the staff channel in the outbox, inside the caller's transaction.

Workflows never talk to Slack. They queue what staff should see; the Slack deliverer renders and posts
it in order, and keeps it queued while Slack is down or not configured.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.orm import Session

from storage.enums import Channel
from storage.outbox import OutboxItem
from storage.tickets import Ticket


class StaffPost(str, enum.Enum):
    """What a Slack outbox row is. Cards are rendered from the ticket's state when they are delivered."""

    CARD = "slack_card"  # a new ticket: post its card to the channel
    CARD_UPDATE = "slack_card_update"  # the ticket moved: update the card in place
    THREAD = "slack_thread"  # a line in the ticket's thread: a host reply, an email sent, a decision
    NOTICE = "slack_notice"  # a channel message not tied to a ticket: digests, summaries, previews


def post_to_staff(
    session: Session,
    post: StaffPost,
    ticket: Ticket | None = None,
    text: str = "",
    blocks: list[dict[str, Any]] | None = None,
    dedupe_key: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> OutboxItem:
    """Queue one staff-channel post. ``text`` is plain text from us; callers escape anything from email.

    ``files`` are stored documents to upload with the post (``storage.documents.file_reference``).
    """
    payload: dict[str, Any] = {"text": text, "blocks": blocks or []}
    if files:
        payload["files"] = files
    item = OutboxItem(
        channel=Channel.SLACK,
        kind=post.value,
        ticket_id=ticket.id if ticket else None,
        payload=payload,
        dedupe_key=dedupe_key,
    )
    session.add(item)
    return item
