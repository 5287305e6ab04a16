"""Slack delivery: posts the Slack rows of the outbox to the staff channel strictly in order.

The queue is head-of-line: a later row is never posted while an earlier one waits, so cards appear in
the order tickets arrived once Slack is back. A thread line or card update needs its card's ``slack_ts``;
when the card is still queued behind it, the card goes first. 429 (honouring Retry-After), 5xx and
connection errors are retried with backoff for as long as Slack is down, so nothing is lost. Any other
error is permanent: the row is recorded as failed and the queue moves on; the thread lines of a card
that could not be posted are skipped. A row is marked sent only after Slack accepted it, and a run's rows
are recorded together, so a deliverer killed in between can post that run's messages again once their
one-minute lease has run out; one that lives through a database outage records them when it is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import sqlalchemy as sa
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.delivery import LeaseKeeper, TransportError
from bot.slack.cards import load_card, render_card
from bot.slack.text import THREAD_TEXT_LIMIT, escape, fold
from storage.base import utcnow
from storage.documents import StoredDocument
from storage.enums import OPEN_STATUSES, Channel, OutboxStatus
from storage.outbox import OutboxItem, claim_row, give_back, is_due, mark_retry, settle, unfinished
from storage.tickets import TICKETS, Ticket
from workflows.staff import StaffPost

logger = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=1)  # renewed while the deliverer is alive; a killed one's rows are free within it
POST_MARGIN = dt.timedelta(seconds=15)  # the client's timeout: no post is started with less lease left
MAX_BACKOFF = dt.timedelta(minutes=5)  # the longest a recovered Slack waits for the queue to notice
DEFAULT_RETRY_AFTER = 30.0
RUN_LENGTH = 20  # rows claimed together at most
# Errors Slack answers with HTTP 200 that still mean "try again later".
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})
UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.SENDING)
# Built once, like the outbox's own statements: they run for every card.
KEEP_CARD_TS = (sa.update(TICKETS).where(TICKETS.c.id == sa.bindparam("ticket_id"))
                .values(slack_ts=sa.bindparam("card_ts"), updated_at=TICKETS.c.updated_at))  # not a change to the ticket
TICKETS_OF = sa.select(Ticket).where(Ticket.id.in_(sa.bindparam("ids", expanding=True)))


class SlackError(TransportError):
    """A failed Slack call; a transient one may say when to try again (Retry-After)."""

    def __init__(self, message: str, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message, permanent)
        self.retry_after = retry_after


def classify(method: str, exc: SlackApiError) -> SlackError:
    response = exc.response
    error = response.data.get("error", "") if isinstance(response.data, dict) else ""
    if response.status_code == 429:
        retry_after = float(response.headers.get("Retry-After") or DEFAULT_RETRY_AFTER)
        return SlackError(f"{method}: rate limited for {retry_after:g} s", retry_after=retry_after)
    if response.status_code >= 500 or error in TRANSIENT_ERRORS:
        return SlackError(f"{method}: HTTP {response.status_code} {error}".rstrip())
    return SlackError(f"{method}: {error or f'HTTP {response.status_code}'}", permanent=True)


@contextmanager
def slack_errors(method: str) -> Iterator[None]:
    """Turn what slack_sdk and aiohttp raise into a SlackError that says whether to retry."""
    try:
        yield
    except SlackApiError as exc:
        raise classify(method, exc) from exc
    except SlackRequestError as exc:
        raise SlackError(f"{method}: {exc}", permanent=True) from exc
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise SlackError(f"{method}: Slack unreachable: {type(exc).__name__}") from exc


def backoff(attempts: int) -> dt.timedelta:
    """From 2 s, doubling to at most 5 minutes, with jitter."""
    seconds = min(2 * 2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
    return dt.timedelta(seconds=seconds * random.uniform(0.8, 1.2))


class Hold(enum.Enum):
    SKIPPED = "skipped"  # the head was settled without posting; look at the next one
    WAIT = "wait"  # the head cannot be posted yet, and nothing may overtake it


@dataclass(frozen=True)
class Step:
    """A claimed row, with what posting it needs read in the same transaction as the claim."""

    item: OutboxItem
    slack_ts: str | None = None  # the ticket's card, for an update or a thread line
    card: dict[str, Any] | None = None  # the card rendered now: for card rows, or a card a line needs first


@dataclass(frozen=True)
class Outcome:
    """How posting a step went; recorded in the next transaction."""

    item: OutboxItem
    error: SlackError | None = None
    card_ts: str | None = None  # a card just posted: kept on the ticket even when a later call failed


class SlackDeliverer:
    """Drains the Slack rows of the outbox, in order, to one channel.

    Rows are claimed in short runs from the head of the queue and posted one after another; the
    outcomes of a run and the claim of the next one commit together. On SQLite every writer queues for
    the one write lock, which intake holds much of the time under load, so one write per run instead
    of two per post is what lets Slack delivery keep up with intake.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: AsyncWebClient,
        channel: str,
        tz: ZoneInfo,
        backoff: Callable[[int], dt.timedelta] = backoff,
        lease: dt.timedelta = LEASE,
        run_length: int = RUN_LENGTH,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.channel = channel
        self.tz = tz
        self.backoff = backoff
        self.leases = LeaseKeeper(sessions, lease, POST_MARGIN)
        self.run_length = run_length
        # The last run's outcomes and the steps it never tried, kept until the database takes them.
        self._outcomes: list[Outcome] = []
        self._unposted: list[Step] = []
        # The last claim found nothing else due: the delivery loop can sleep until a wake-up.
        self.drained = False

    async def deliver_due(self, limit: int = 100) -> int:
        """Post rows from the head of the queue until it is empty or its head must wait; returns how many."""
        handled: int = 0
        while True:
            started = time.monotonic()
            # Once a run took every row that was due, the next call only records it: rows queued since then
            # wake the delivery loop, which is cheaper than asking the database whether there are any.
            wanted = 0 if handled and self.drained else min(self.run_length, limit - handled)
            run = await asyncio.to_thread(self._record_and_claim, wanted)
            if not run:
                return handled
            self.leases.claimed([step.item for step in run], started)
            async with self.leases.kept():
                self._outcomes, self._unposted = await self._post_run(run)
            handled += len(self._outcomes)

    async def drain(self) -> int:
        total = 0
        while handled := await self.deliver_due():
            total += handled
        return total

    async def close(self) -> None:
        if self.client.session is not None:
            await self.client.session.close()

    async def _post_run(self, run: list[Step]) -> tuple[list[Outcome], list[Step]]:
        """Post in order; after a failure worth retrying the rest of the run waits behind it, unposted, and
        so does the rest once the lease may have run out."""
        outcomes = []
        for n, step in enumerate(run):
            if not self.leases.usable():
                return outcomes, run[n:]
            outcome = await self._post(step)
            outcomes.append(outcome)
            if outcome.error is not None and not outcome.error.permanent:
                return outcomes, run[n + 1:]
        return outcomes, []

    # Recording and claiming (blocking, run in a thread, one transaction).

    def _record_and_claim(self, limit: int) -> list[Step]:
        """Record the last run and claim the next in one transaction. When it fails (the database went away)
        the last run stays in memory and is recorded by the next call, so nothing it posted is posted again."""
        with self.sessions() as session:
            for outcome in self._outcomes:
                self._record(session, outcome)
            for step in self._unposted:  # never tried: back in line at once, behind the row that must wait
                give_back(session, step.item.id, step.item.attempts)
            run = self._claim_run(session, limit) if limit > 0 else []
            session.commit()
        for finished in (*(o.item for o in self._outcomes), *(s.item for s in self._unposted)):
            self.leases.release(finished.id)
        self._outcomes, self._unposted = [], []
        return run

    def _claim_run(self, session: Session, limit: int) -> list[Step]:
        """Claim consecutive due rows from the head. A run stops before a row that needs the ts of a card
        posted in the same run, and after a card claimed ahead of the thread line waiting for it."""
        run: list[Step] = []
        new_cards: set[int | None] = set()
        heads = unfinished(session, Channel.SLACK, limit)
        tickets = tickets_of(session, heads)
        self.drained = False
        for head in heads:  # a skipped head is settled: the next is next
            if len(run) == limit or not is_due(head, utcnow()) or (run and head.ticket_id in new_cards):
                break
            plan = self._plan(session, head, tickets)
            if plan is Hold.SKIPPED:
                continue
            if plan is Hold.WAIT or (run and plan is not head) or not claim_row(session, plan, self.leases.lease):
                break
            step = self._prepare(session, plan, tickets.get(plan.ticket_id))
            run.append(step)
            if plan is not head:
                break  # the thread line at the head goes in the next run, once the card's ts is kept
            if step.card is not None and not step.slack_ts:
                new_cards.add(plan.ticket_id)
        else:
            self.drained = len(heads) < limit  # every unfinished row was looked at, and none was left waiting
        return run

    def _plan(self, session: Session, head: OutboxItem, tickets: dict[int | None, Ticket]) -> OutboxItem | Hold:
        """The row to post now: the head itself, or the card a thread line at the head is waiting for."""
        if head.kind not in (StaffPost.THREAD.value, StaffPost.CARD_UPDATE.value) or head.ticket_id is None:
            return head
        ticket = tickets.get(head.ticket_id)
        if ticket is None or ticket.slack_ts:
            return head
        card = session.scalar(
            sa.select(OutboxItem).where(OutboxItem.ticket_id == ticket.id, OutboxItem.kind == StaffPost.CARD.value)
            .order_by(OutboxItem.id).limit(1))
        if card is not None and card.status in UNFINISHED:
            if head.kind == StaffPost.CARD_UPDATE.value:
                return self._skip(session, head, "the card is still queued and will show the current state")
            # The card is queued behind this line (a count recorded at once queues its card last): it goes first.
            return card if is_due(card, utcnow()) else Hold.WAIT
        if card is not None and card.status != OutboxStatus.SENT:
            return self._skip(session, head, "the ticket's card could not be posted")
        if ticket.status not in OPEN_STATUSES:
            return self._skip(session, head, "the ticket has no card: it never needed staff")
        return head  # a ticket that needs staff again (the host wrote back after an automatic answer): card now

    def _skip(self, session: Session, item: OutboxItem, reason: str) -> Hold:
        settle(session, item.id, OutboxStatus.SKIPPED, reason)
        logger.info("Slack outbox %s skipped: %s", item.id, reason)
        return Hold.SKIPPED

    def _prepare(self, session: Session, item: OutboxItem, ticket: Ticket | None) -> Step:
        if ticket is None:
            return Step(item)
        card = render_card(load_card(session, ticket), self.tz) if needs_card(item.kind, ticket.slack_ts) else None
        return Step(item, ticket.slack_ts, card)

    def _record(self, session: Session, outcome: Outcome) -> None:
        item = outcome.item
        if outcome.card_ts and item.ticket_id is not None:
            # The card's ts goes on the ticket in the same commit as the row: threads and updates need it.
            session.connection().execute(KEEP_CARD_TS, {"ticket_id": item.ticket_id, "card_ts": outcome.card_ts})
        error = outcome.error
        if error is None:
            settle(session, item.id, OutboxStatus.SENT, attempts=item.attempts)
        elif error.permanent:
            logger.warning("Slack outbox %s (%s) failed for good: %s", item.id, item.kind, error)
            settle(session, item.id, OutboxStatus.FAILED, str(error), item.attempts)
        else:
            # Slack itself failed: this row, at the head, holds the whole queue until Slack is back (Retry-After).
            wait = self.backoff(item.attempts) if error.retry_after is None else dt.timedelta(seconds=error.retry_after)
            logger.info("Slack outbox %s (%s) will be retried in %.0f s: %s", item.id, item.kind,
                        wait.total_seconds(), error)
            mark_retry(session, item.id, str(error), utcnow() + wait, item.attempts)

    # Posting (async, no database work except for a notice's files).

    async def _post(self, step: Step) -> Outcome:
        kind, card_ts = step.item.kind, None
        try:
            if needs_card(kind, step.slack_ts):
                card_ts = await self._put_card(step)
            if kind == StaffPost.THREAD.value:
                await self._post_line(step.item, step.slack_ts or card_ts)
            elif kind == StaffPost.NOTICE.value:
                await self._post_notice(step.item)
            elif kind not in (StaffPost.CARD.value, StaffPost.CARD_UPDATE.value):
                raise SlackError(f"unknown Slack post kind {kind!r}", permanent=True)
        except SlackError as exc:
            return Outcome(step.item, exc, card_ts)
        return Outcome(step.item, None, card_ts)

    async def _put_card(self, step: Step) -> str | None:
        """Update the card in place, or post it; returns the ts of a card just posted."""
        if step.card is None:
            raise SlackError(f"no ticket to show for outbox row {step.item.id}", permanent=True)
        if step.slack_ts:
            with slack_errors("chat.update"):
                await self.client.chat_update(channel=self.channel, ts=step.slack_ts, **step.card)
            return None
        with slack_errors("chat.postMessage"):
            response = await self.client.chat_postMessage(channel=self.channel, unfurl_links=False,
                                                          unfurl_media=False, **step.card)
        return str(response["ts"])

    async def _post_line(self, item: OutboxItem, thread_ts: str | None) -> None:
        with slack_errors("chat.postMessage"):
            await self.client.chat_postMessage(channel=self.channel, thread_ts=thread_ts, unfurl_links=False,
                                               unfurl_media=False, **message(item.payload))

    async def _post_notice(self, item: OutboxItem) -> None:
        """A channel message; its files are uploaded into its thread. A retry does not post the message again."""
        slack_ts = item.payload.get("posted_ts")
        if not slack_ts:
            with slack_errors("chat.postMessage"):
                response = await self.client.chat_postMessage(channel=self.channel, unfurl_links=False,
                                                              unfurl_media=False, **message(item.payload))
            slack_ts = str(response["ts"])
            await asyncio.to_thread(self._remember_post, item.id, slack_ts)
        for reference in item.payload.get("files") or []:
            await self._upload(reference, slack_ts)

    async def _upload(self, reference: dict[str, Any], thread_ts: str) -> None:
        data = await asyncio.to_thread(self._document, int(reference["document_id"]))
        if data is None:
            raise SlackError(f"document {reference['document_id']} no longer exists", permanent=True)
        with slack_errors("files.upload"):
            await self.client.files_upload_v2(channel=self.channel, thread_ts=thread_ts, file=data,
                                              filename=reference.get("filename") or "document.pdf",
                                              title=reference.get("title") or reference.get("filename"),
                                              request_file_info=False)

    def _remember_post(self, item_id: int, slack_ts: str) -> None:
        with self.sessions() as session:
            item = session.get(OutboxItem, item_id)
            if item is not None:
                item.payload = {**item.payload, "posted_ts": slack_ts}
                session.commit()

    def _document(self, document_id: int) -> bytes | None:
        with self.sessions() as session:
            document = session.get(StoredDocument, document_id)
            return bytes(document.data) if document is not None else None


def tickets_of(session: Session, items: list[OutboxItem]) -> dict[int | None, Ticket]:
    """The tickets of ``items``, by id, in one query rather than one for each row."""
    ids = sorted({item.ticket_id for item in items if item.ticket_id is not None})
    return {ticket.id: ticket for ticket in session.scalars(TICKETS_OF, {"ids": ids})} if ids else {}


def needs_card(kind: str, slack_ts: str | None) -> bool:
    """Card rows and updates show the card; a thread line needs one first when its ticket has none yet."""
    if kind in (StaffPost.CARD.value, StaffPost.CARD_UPDATE.value):
        return True
    return kind == StaffPost.THREAD.value and not slack_ts


def message(payload: dict[str, Any]) -> dict[str, Any]:
    """chat.postMessage arguments from a queued post. Its ``text`` is plain text, often from email: escaped here."""
    arguments: dict[str, Any] = {"text": escape(fold(str(payload.get("text") or ""), THREAD_TEXT_LIMIT)) or " "}
    if payload.get("blocks"):
        arguments["blocks"] = payload["blocks"]
    return arguments
