"""Bulk delivery of a mailing to the subscriber list over a few pooled, reused SMTP connections.

Bulk mail does not go through the per-row outbox table, for throughput, and only because the
mailing's delivery rows (``storage/mailouts.py``) are themselves its durable outbox: every row is
claimed by a conditional UPDATE before its message is sent and marked sent after the relay accepted
it. Sent marks are written in small batches, so a process killed outright can resend the few
messages accepted since the last batch; that is the same documented window as the outbox's, a fraction
of a second wide.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import smtplib
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

import aiosmtplib

from bot.delivery import MailTransport, RelayAddress, SmtpRelay, TransportError, backoff, make_transport
from storage.base import utcnow
from storage.enums import MailingStatus
from storage.mailouts import (
    Delivery,
    Mailing,
    claim_deliveries,
    enqueue_deliveries,
    mark_failed,
    mark_sent,
    release,
    skip_undeliverable,
    unfinished,
)
from workflows.bulkmail import BulkMessage, build_bulk_message
from workflows.policy import MailboxPolicy

logger = logging.getLogger(__name__)

class PooledRelay(SmtpRelay):
    """A relay connection for bulk sends: the same reused connection, with Nagle's algorithm off.

    Each message is a few small request-response exchanges; without TCP_NODELAY (RFC 896) a small write
    can wait for the peer's delayed ACK, which on loopback costs more than the message itself.
    """

    async def _connect(self) -> aiosmtplib.SMTP:
        client = await super()._connect()
        transport = client.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client


class ThreadedRelay:
    """One bulk connection driven by the standard library's smtplib on a thread of its own.

    A mail-out is thousands of short SMTP conversations, and the asyncio client spends more time per
    message than the conversation itself (measured in BENCHMARKS.md: about half the rate smtplib
    reaches against the same server). smtplib releases the GIL while it waits on the socket, so a few
    of these, each with its own thread and connection, keep the relay as busy as it will go.
    """

    def __init__(self, address: RelayAddress, timeout: float = 30) -> None:
        self.address = address
        self.timeout = timeout
        self._client: smtplib.SMTP | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-smtp")

    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._send, raw, sender, recipients)

    def _connect(self) -> smtplib.SMTP:
        if self._client is not None:
            return self._client
        a = self.address
        if a.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(a.host, a.port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(a.host, a.port, timeout=self.timeout)
            client.ehlo()
            if client.has_extn("starttls"):  # STARTTLS whenever the relay offers it, as for single mail
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see PooledRelay
        if a.username:
            client.login(a.username, a.password or "")
        self._client = client
        return client

    def _send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        try:
            refused = self._connect().sendmail(sender, recipients, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            permanent = all(500 <= code < 600 for code, _ in exc.recipients.values())
            raise TransportError(f"recipients refused: {exc.recipients}", permanent) from exc
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise TransportError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=500 <= exc.smtp_code < 600) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransportError(f"relay unreachable: {type(exc).__name__}: {exc}") from exc
        if refused and len(refused) == len(recipients):
            raise TransportError(f"every recipient refused: {refused}", permanent=True)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except OSError:
                pass  # the connection is already gone; a new one is opened for the next message

    def _quit(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._quit)
        self._thread.shutdown(wait=False)


def bulk_transport(relay_url: str | None, maildir: Path) -> MailTransport:
    """One connection of the bulk sender's pool: the relay, or the Maildir when none is configured."""
    if relay_url:
        return ThreadedRelay(RelayAddress.parse(relay_url))
    return make_transport(None, maildir)


ProgressHook = Callable[[int, int], None]  # (messages handled, messages due at the start)
Claimed = tuple[int, str, str]  # (delivery id, address, name)


@dataclass
class MailoutReport:
    mailing_id: int
    added: int = 0  # delivery rows created by this run
    skipped: int = 0  # subscribers who left or bounced since their row was added
    due: int = 0
    sent: int = 0
    failed: int = 0  # permanent failures, kept visible
    deferred: int = 0  # transient failures, retried by a later run
    remaining: int = 0  # rows not yet final after this run
    errors: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.remaining == 0

    def as_json(self) -> dict[str, object]:
        return {"mailing_id": self.mailing_id, "added": self.added, "skipped": self.skipped, "due": self.due,
                "sent": self.sent, "failed": self.failed, "deferred": self.deferred, "remaining": self.remaining}


class _Feed:
    """Hands claimed rows to the workers, claiming the next batch in the background before this one runs out."""

    def __init__(self, claim: Callable[[], Awaitable[list[Claimed]]], low_water: int) -> None:
        self._claim = claim
        self._low_water = low_water
        self._items: deque[Claimed] = deque()
        self._next: asyncio.Task[list[Claimed]] | None = None
        self._done = False
        self._lock = asyncio.Lock()

    async def get(self) -> Claimed | None:
        async with self._lock:
            if not self._items and not self._done:
                batch = await (self._next or self._claim())
                self._next = None
                self._items.extend(batch)
                self._done = not batch
            if not self._items:
                return None
            item = self._items.popleft()
            if len(self._items) < self._low_water and self._next is None and not self._done:
                self._next = asyncio.create_task(self._claim())
            return item

    async def close(self) -> list[Claimed]:
        """Stop handing out rows; returns the claimed rows nobody sent, so they can be given back."""
        async with self._lock:
            self._done = True
            leftover = list(self._items)
            self._items.clear()
            if self._next is not None:
                leftover.extend(await self._next)
                self._next = None
            return leftover


class BulkSender:
    """Sends one mailing's due delivery rows over ``connections`` transports, each a reused connection."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport_factory: Callable[[], MailTransport],
        connections: int = 4,
        batch_size: int = 500,
        lease: dt.timedelta = dt.timedelta(minutes=15),
        max_attempts: int = 8,
        flush_seconds: float = 0.2,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.sessions = sessions
        self.transport_factory = transport_factory
        self.connections = max(1, connections)
        self.batch_size = batch_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.flush_seconds = flush_seconds
        self.on_progress = on_progress
        self._sent: list[int] = []
        self._handled = 0
        self._transient_in_a_row = 0

    async def send(self, mailing_id: int, message: BulkMessage) -> MailoutReport:
        """Deliver what is due now. Re-running it later sends only what no run has sent."""
        report = MailoutReport(mailing_id)
        report.added, report.skipped, report.due = await asyncio.to_thread(self._prepare, mailing_id)
        self._notify(report.due)
        stop = asyncio.Event()
        feed = _Feed(lambda: asyncio.to_thread(self._claim, mailing_id), max(self.batch_size // 4, self.connections))
        transports = [self.transport_factory() for _ in range(self.connections)]
        flusher = asyncio.create_task(self._flush_every(stop))
        try:
            results = await asyncio.gather(*(self._work(feed, t, message, stop, report) for t in transports),
                                           return_exceptions=True)
        finally:
            stop.set()
            leftover = await feed.close()
            await flusher
            await asyncio.to_thread(self._give_back, leftover)
            await self._flush()
            for transport in transports:
                await transport.close()
        report.remaining = await asyncio.to_thread(self._finish, mailing_id)
        fatal = [r for r in results if isinstance(r, BaseException)]
        if fatal:
            raise fatal[0]
        return report

    def _notify(self, total: int) -> None:
        self._total = total
        if self.on_progress:
            self.on_progress(self._handled, total)

    async def _work(
        self, feed: _Feed, transport: MailTransport, message: BulkMessage, stop: asyncio.Event, report: MailoutReport
    ) -> None:
        # On an unexpected error every worker finishes the message in hand and stops, so nothing is
        # cut off mid-send; the error is raised once the sent marks are safely written.
        while not stop.is_set():
            item = await feed.get()
            if item is None:
                return
            try:
                await self._deliver(item, transport, message, report)
            except BaseException:
                stop.set()
                raise
            if self._transient_in_a_row >= 3 * self.connections:
                logger.warning("mailing %s: the relay keeps failing; leaving the rest for the next run", report.mailing_id)
                stop.set()

    async def _deliver(self, item: Claimed, transport: MailTransport, message: BulkMessage, report: MailoutReport) -> None:
        delivery_id, address, name = item
        try:
            await transport.send(message.personalize(address, name), message.sender, [address])
        except TransportError as exc:
            await self._record_failure(delivery_id, address, exc, report)
        else:
            self._transient_in_a_row = 0
            self._sent.append(delivery_id)
            report.sent += 1
        self._handled += 1
        if self.on_progress:
            self.on_progress(self._handled, self._total)

    async def _record_failure(self, delivery_id: int, address: str, exc: TransportError, report: MailoutReport) -> None:
        logger.warning("mailing delivery %s to %s failed: %s", delivery_id, address, exc)
        attempts = await asyncio.to_thread(self._attempts, delivery_id)
        if exc.permanent or attempts >= self.max_attempts:
            report.failed += 1
            await asyncio.to_thread(self._with_session, mark_failed, delivery_id, str(exc))
            return
        self._transient_in_a_row += 1
        report.deferred += 1
        await asyncio.to_thread(self._with_session, release, delivery_id, str(exc), utcnow() + backoff(attempts))

    async def _flush_every(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.flush_seconds)
            except TimeoutError:
                await self._flush()

    async def _flush(self) -> None:
        sent, self._sent = self._sent, []
        if sent:
            await asyncio.to_thread(self._with_session, mark_sent, sent)

    def _with_session(self, action: Callable[..., None], *args: object) -> None:
        with self.sessions() as session:
            action(session, *args)

    def _prepare(self, mailing_id: int) -> tuple[int, int, int]:
        with self.sessions() as session:
            mailing = session.get(Mailing, mailing_id)
            if mailing is not None and mailing.status == MailingStatus.SCHEDULED:
                mailing.status = MailingStatus.SENDING
                session.commit()
            added = enqueue_deliveries(session, mailing_id)
            skipped = skip_undeliverable(session, mailing_id)
            return added, skipped, unfinished(session, mailing_id)

    def _claim(self, mailing_id: int) -> list[Claimed]:
        with self.sessions() as session:
            return claim_deliveries(session, mailing_id, self.batch_size, self.lease)

    def _attempts(self, delivery_id: int) -> int:
        with self.sessions() as session:
            row = session.get(Delivery, delivery_id)
            return row.attempts if row else self.max_attempts

    def _give_back(self, leftover: list[Claimed]) -> None:
        with self.sessions() as session:
            for delivery_id, _, _ in leftover:
                release(session, delivery_id, "", utcnow())

    def _finish(self, mailing_id: int) -> int:
        """Close the mailing once every row is final; returns how many are not."""
        with self.sessions() as session:
            remaining = unfinished(session, mailing_id)
            mailing = session.get(Mailing, mailing_id)
            if remaining == 0 and mailing is not None and mailing.status != MailingStatus.SENT:
                mailing.status = MailingStatus.SENT
                mailing.finished_at = utcnow()
                session.commit()
            return remaining


def bulk_message_for(
    sessions: sessionmaker[Session], mailing_id: int, policy: MailboxPolicy, public_url: str, secret: bytes
) -> BulkMessage:
    """The mailing as stored, ready to personalize."""
    with sessions() as session:
        mailing = session.get(Mailing, mailing_id)
        if mailing is None:
            raise LookupError(f"no mailing {mailing_id}")
        return build_bulk_message(policy, mailing.subject, mailing.text_body, mailing.html_body, public_url, secret)


async def send_mailing(
    sessions: sessionmaker[Session],
    mailing_id: int,
    policy: MailboxPolicy,
    public_url: str,
    secret: bytes,
    transport_factory: Callable[[], MailTransport],
    connections: int = 4,
    on_progress: ProgressHook | None = None,
) -> MailoutReport:
    """Render the mailing once and deliver it to every subscriber who has not had it."""
    message = await asyncio.to_thread(bulk_message_for, sessions, mailing_id, policy, public_url, secret)
    sender = BulkSender(sessions, transport_factory, connections=connections, on_progress=on_progress)
    return await sender.send(mailing_id, message)
