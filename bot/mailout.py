"""Bulk delivery of a mailing to the subscriber list over a few pooled, reused SMTP connections.

Bulk mail does not go through the per-row outbox table, for throughput, and only because the
mailing's delivery rows (``storage/mailouts.py``) are themselves its durable outbox: every row is
claimed by a conditional UPDATE before its message is sent and marked sent after the relay accepted
it. Sent marks are written in small batches, so a process killed outright can resend the few
messages accepted since the last batch; that is the same documented window as the outbox's, a fraction
of a second wide.

Each connection has a sending thread of its own, which claims its rows in batches, makes each
subscriber's copy and sends it; the event loop only starts the threads, writes the sent marks and
reports progress, so nothing per message waits on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from bot.delivery import MailTransport, RelayAddress, TransportError, backoff, make_transport
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

SendNow = Callable[[bytes, str, list[str]], None]  # sends one message from the calling thread


@runtime_checkable
class BlockingTransport(Protocol):
    """A bulk connection that a sending thread drives directly, with no hop through the event loop."""

    def send_now(self, raw: bytes, sender: str, recipients: list[str]) -> None: ...


class ThreadedRelay:
    """One bulk connection driven by the standard library's smtplib from the sending thread that owns it.

    A mail-out is thousands of short SMTP conversations, and the asyncio client spends more time per
    message than the conversation itself (measured in BENCHMARKS.md: about half the rate smtplib
    reaches against the same server). smtplib releases the GIL while it waits on the socket, so a few
    of these, each on its own thread and connection, keep the relay as busy as it will go.
    """

    def __init__(self, address: RelayAddress, timeout: float = 30) -> None:
        self.address = address
        self.timeout = timeout
        self._client: smtplib.SMTP | None = None

    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        await asyncio.to_thread(self.send_now, raw, sender, recipients)

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
        # Each message is a few small request-response exchanges; without TCP_NODELAY (RFC 896) a small write
        # can wait for the peer's delayed ACK, which on loopback costs more than the message itself.
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if a.username:
            client.login(a.username, a.password or "")
        self._client = client
        return client

    def send_now(self, raw: bytes, sender: str, recipients: list[str]) -> None:
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
        await asyncio.to_thread(self._quit)


def bulk_transport(relay_url: str | None, maildir: Path) -> MailTransport:
    """One connection of the bulk sender's pool: the relay, or the Maildir when none is configured."""
    if relay_url:
        return ThreadedRelay(RelayAddress.parse(relay_url))
    return make_transport(None, maildir)


def blocking_send(transport: MailTransport, loop: asyncio.AbstractEventLoop) -> SendNow:
    """How a sending thread sends over ``transport``: directly, or by running an asyncio transport on ``loop``."""
    if isinstance(transport, BlockingTransport):
        return transport.send_now

    def send(raw: bytes, sender: str, recipients: list[str]) -> None:
        asyncio.run_coroutine_threadsafe(transport.send(raw, sender, recipients), loop).result()

    return send


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


class BulkSender:
    """Sends one mailing's due delivery rows over ``connections`` transports, each a reused connection.

    One sending thread per connection claims rows for itself: a batch at a time, smaller as the due rows
    run out (guided self-scheduling), so no connection sits idle at the end while another works through
    a large batch. A sender serves one ``send``; ``send_mailing`` makes a new one each time.
    """

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
        min_batch: int = 25,
    ) -> None:
        self.sessions = sessions
        self.transport_factory = transport_factory
        self.connections = max(1, connections)
        self.batch_size = batch_size
        self.min_batch = max(1, min(min_batch, batch_size))
        self.lease = lease
        self.max_attempts = max_attempts
        self.flush_seconds = flush_seconds
        self.on_progress = on_progress
        self._lock = threading.Lock()  # guards what the sending threads share below
        self._stop = threading.Event()
        self._sent: list[int] = []
        self._handled = 0
        self._total = 0
        self._unclaimed = 0  # due rows no thread has claimed yet, as far as this run knows
        self._transient_in_a_row = 0

    async def send(self, mailing_id: int, message: BulkMessage) -> MailoutReport:
        """Deliver what is due now. Re-running it later sends only what no run has sent."""
        report = MailoutReport(mailing_id)
        report.added, report.skipped, report.due = await asyncio.to_thread(self._prepare, mailing_id)
        self._total = self._unclaimed = report.due
        self._report_progress()
        loop = asyncio.get_running_loop()
        transports = [self.transport_factory() for _ in range(self.connections)]
        threads = concurrent.futures.ThreadPoolExecutor(max_workers=self.connections, thread_name_prefix="bulk-send")
        jobs = [threads.submit(self._work, mailing_id, blocking_send(t, loop), message, report) for t in transports]
        flusher = asyncio.create_task(self._flush_every())
        try:
            await asyncio.wait([asyncio.wrap_future(job) for job in jobs])
        finally:
            # On an unexpected error, or if this task is cancelled, every thread finishes the message in hand,
            # gives back the rows it claimed and stops; the error is raised once the sent marks are written.
            self._stop.set()
            await asyncio.to_thread(threads.shutdown)
            await flusher
            await self._flush()
            for transport in transports:
                await transport.close()
        report.remaining = await asyncio.to_thread(self._finish, mailing_id)
        fatal = [job.exception() for job in jobs if job.exception() is not None]
        if fatal:
            raise fatal[0]
        return report

    def _work(self, mailing_id: int, send: SendNow, message: BulkMessage, report: MailoutReport) -> None:
        """One sending thread: claim a batch, send each row its own copy, until nothing is due or the run stops."""
        try:
            while not self._stop.is_set():
                batch = self._claim(mailing_id, self._next_batch_size())
                if not batch:
                    return
                self._send_batch(batch, send, message, report)
        except BaseException:
            self._stop.set()
            raise

    def _next_batch_size(self) -> int:
        with self._lock:
            size = max(self.min_batch, min(self.batch_size, self._unclaimed // self.connections))
            self._unclaimed = max(0, self._unclaimed - size)
            return size

    def _send_batch(self, batch: list[Claimed], send: SendNow, message: BulkMessage, report: MailoutReport) -> None:
        for n, item in enumerate(batch):
            if self._stop.is_set():
                self._give_back(batch[n:])
                return
            try:
                self._deliver(item, send, message, report)
            except BaseException:
                self._give_back(batch[n + 1:])  # the row in hand stays leased: the relay may have taken it
                raise

    def _deliver(self, item: Claimed, send: SendNow, message: BulkMessage, report: MailoutReport) -> None:
        delivery_id, address, name = item
        try:
            copy = message.personalize(address, name)
        except UnicodeEncodeError:
            # A non-ASCII address needs SMTPUTF8 (RFC 6531), which bulk mail does not use. One such
            # subscriber fails alone, with the reason; the edition goes on to everyone else.
            unencodable = TransportError("the address has non-ASCII characters, which need SMTPUTF8", permanent=True)
            self._record_failure(delivery_id, address, unencodable, report)
            return
        try:
            send(copy, message.sender, [address])
        except TransportError as exc:
            self._record_failure(delivery_id, address, exc, report)
            return
        with self._lock:
            self._transient_in_a_row = 0
            self._sent.append(delivery_id)
            self._handled += 1
            report.sent += 1

    def _record_failure(self, delivery_id: int, address: str, exc: TransportError, report: MailoutReport) -> None:
        logger.warning("mailing delivery %s to %s failed: %s", delivery_id, address, exc)
        attempts = self._attempts(delivery_id)
        if exc.permanent or attempts >= self.max_attempts:
            self._with_session(mark_failed, delivery_id, str(exc))
            with self._lock:
                report.failed += 1
                self._handled += 1
            return
        self._with_session(release, delivery_id, str(exc), utcnow() + backoff(attempts))
        with self._lock:
            report.deferred += 1
            self._handled += 1
            self._transient_in_a_row += 1
            relay_down = self._transient_in_a_row >= 3 * self.connections
        if relay_down and not self._stop.is_set():
            logger.warning("mailing %s: the relay keeps failing; leaving the rest for the next run", report.mailing_id)
            self._stop.set()

    async def _flush_every(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.flush_seconds)
            await self._flush()

    async def _flush(self) -> None:
        with self._lock:
            sent, self._sent = self._sent, []
        if sent:
            await asyncio.to_thread(self._with_session, mark_sent, sent)
        self._report_progress()

    def _report_progress(self) -> None:
        if self.on_progress:
            self.on_progress(self._handled, self._total)

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

    def _claim(self, mailing_id: int, size: int) -> list[Claimed]:
        with self.sessions() as session:
            return claim_deliveries(session, mailing_id, size, self.lease)

    def _attempts(self, delivery_id: int) -> int:
        with self.sessions() as session:
            row = session.get(Delivery, delivery_id)
            return row.attempts if row else self.max_attempts

    def _give_back(self, leftover: list[Claimed]) -> None:
        if not leftover:
            return
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
