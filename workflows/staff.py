"""Tell staff: queue a post for the staff channel in the outbox, inside the caller's transaction.

Workflows never talk to Slack. They queue what staff should see; the Slack deliverer renders and posts
it in order, and keeps it queued while Slack is down or not configured.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.orm import Session

from storage.base import insert_ignoring_clashes, utcnow
from storage.enums import Channel, OutboxStatus
from storage.outbox import OUTBOX, OutboxItem
from storage.tickets import Ticket


QUEUE_CARD = insert_ignoring_clashes(OUTBOX, OUTBOX.c.dedupe_key)  # intake runs it for every new ticket


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
    item = OutboxItem(**staff_post_row(post, ticket.id if ticket else None, payload, dedupe_key))
    session.add(item)
    return item


def card_key(ticket_id: int) -> str:
    """A ticket has one card: its outbox row is unique by this key."""
    return f"card:{ticket_id}"


def queue_card(session: Session, ticket_id: int) -> None:
    """Queue the ticket's card unless it has one. The card's unique key decides, in the one INSERT: a ticket
    routed again (a missing piece arrived) keeps its card, and a new ticket costs no look-up first. The row is
    written at once, on the transaction's connection: its ticket is already stored."""
    session.connection().execute(QUEUE_CARD[session.get_bind().dialect.name], card_row(ticket_id))


def card_row(ticket_id: int) -> dict[str, Any]:
    """The outbox row of a new ticket's card, for intake's batched inserts."""
    return staff_post_row(StaffPost.CARD, ticket_id, {"text": "", "blocks": []}, card_key(ticket_id))


def staff_post_row(post: StaffPost, ticket_id: int | None, payload: dict[str, Any], dedupe_key: str | None) -> dict[str, Any]:
    """The outbox columns of one staff-channel post."""
    now = utcnow()
    return {
        "channel": Channel.SLACK,
        "status": OutboxStatus.PENDING,
        "kind": post.value,
        "ticket_id": ticket_id,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "created_at": now,
        "next_attempt_at": now,
    }
