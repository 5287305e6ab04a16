"""Outbox delivery: a worker that sends queued email through the relay, or into a local Maildir.

When the relay is down the relay is backed off, not each row, so the backlog goes out in the order it was
queued once the relay is back. A 4xx about one message is retried with backoff; a 5xx about it is permanent
and the row stays visible as failed. A row is marked sent only after the relay accepted it, so a process
that dies between the two can send one message twice: the single documented duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.parser
import email.policy
import email.utils
import logging
import mailbox
import random
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.base import utcnow
from storage.enums import Channel, OutboxStatus
from storage.mailstate import suppressed_among
from storage.outbox import OutboxItem, claim_due, give_back, mark_retry, renew_leases, settle

logger = logging.getLogger(__name__)

# A row's lease is short and renewed while its worker is alive, so a killed worker's rows are free again
# within a minute. A send is started only with at least SEND_MARGIN of lease left (the relay's timeout).
LEASE = dt.timedelta(minutes=1)
SEND_MARGIN = dt.timedelta(seconds=30)
BATCH = 20  # rows claimed together; a worker killed mid-batch strands at most these until their lease runs out
MAX_BACKOFF = dt.timedelta(hours=1)


class TransportError(Exception):
    """A failed send. ``permanent`` errors are recorded; the others are retried with backoff.

    ``destination`` says the destination failed as a whole (unreachable, 421, refusing our sender), which is
    not the message's fault: the destination is backed off and every row waits in line for it.
    """

    def __init__(self, message: str, permanent: bool = False, destination: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.destination = destination


class Destination:
    """Where rows go (the relay), backed off as a whole after a failure, in this process's memory.

    While it is backed off nothing is claimed for it, so rows keep their place and, once it is back, go out
    oldest first. Backoff: 2 s, doubling to at most ``longest``, with a little jitter. (Slack's queue is
    strictly in order, so there the row at its head carries the backoff, or Slack's Retry-After.)
    """

    def __init__(self, name: str, longest: dt.timedelta = dt.timedelta(minutes=2)) -> None:
        self.name = name
        self.longest = longest.total_seconds()
        self.failures = 0
        self.closed_until = 0.0  # time.monotonic()

    def wait_seconds(self) -> float:
        """How long until it may be tried again; 0 when it may be tried now."""
        return max(self.closed_until - time.monotonic(), 0.0)

    @property
    def suspect(self) -> bool:
        """It failed last time: check that it is back before trusting it with a row."""
        return self.failures > 0

    def failed(self, reason: str) -> None:
        self.failures += 1
        wait = min(2.0 * 2 ** (self.failures - 1), self.longest) * random.uniform(0.9, 1.1)
        self.closed_until = time.monotonic() + wait
        logger.warning("%s failed (%s); backing it off for %.1f s", self.name, reason, wait)

    def recovered(self) -> None:
        if self.failures:
            logger.info("%s is back after %d failed tries", self.name, self.failures)
        self.failures = 0
        self.closed_until = 0.0


class LeaseKeeper:
    """The leases this worker holds, renewed in the background while it works, so a short lease never runs
    out under a live worker, and a dead worker's rows are free again within one lease.

    ``usable`` is False once the lease may have run out (renewals failed, the database is unreachable): the
    worker then starts no send, because another worker may have taken the row over.
    """

    def __init__(self, sessions: sessionmaker[Session], lease: dt.timedelta, margin: dt.timedelta) -> None:
        self.sessions = sessions
        self.lease = lease
        self.margin = margin.total_seconds()
        self.held: dict[int, int] = {}  # row id -> attempts at its claim, which fences the claim
        self.valid_until = 0.0  # time.monotonic()

    def claimed(self, items: list[OutboxItem], at: float) -> None:
        """Rows just claimed, with the monotonic time the claim started."""
        self.held.update((item.id, item.attempts) for item in items)
        self.valid_until = at + self.lease.total_seconds()

    def release(self, item_id: int) -> None:
        self.held.pop(item_id, None)

    def usable(self) -> bool:
        return time.monotonic() < self.valid_until - self.margin

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the held leases every quarter lease until the block ends."""
        task = asyncio.create_task(self._renew_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 4)
            started = time.monotonic()
            try:
                await asyncio.to_thread(self._renew, dict(self.held))
            except SQLAlchemyError as exc:
                logger.warning("could not renew %d outbox leases: %s", len(self.held), type(exc).__name__)
                continue
            self.valid_until = started + self.lease.total_seconds()

    def _renew(self, held: dict[int, int]) -> None:
        with self.sessions() as session:
            renew_leases(session, held, utcnow() + self.lease)
            session.commit()


class MailTransport(Protocol):
    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None: ...

    async def probe(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class RelayAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def parse(cls, url: str) -> RelayAddress:
        """``smtp://[user:pass@]host:port`` or ``smtps://``; user and password are percent-decoded."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_RELAY_URL must look like smtp://[user:pass@]host:port or smtps://...")
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
        )


class SmtpRelay:
    """One reused connection to the relay, upgraded with STARTTLS whenever the server offers it."""

    def __init__(self, address: RelayAddress, tls_context: ssl.SSLContext | None = None, timeout: float = 30) -> None:
        self.address = address
        self.tls_context = tls_context
        self.timeout = timeout
        self._client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        a = self.address
        client = aiosmtplib.SMTP(
            hostname=a.host,
            port=a.port,
            use_tls=a.implicit_tls,
            start_tls=None if not a.implicit_tls else False,  # None: STARTTLS when the server offers it
            tls_context=self.tls_context,
            timeout=self.timeout,
        )
        await client.connect()
        if a.username:
            await client.login(a.username, a.password or "")
        self._client = client
        return client

    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        try:
            client = await self._connect()
            errors, _ = await client.sendmail(sender, recipients, raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            permanent = all(500 <= r.code < 600 for r in exc.recipients)
            raise TransportError(f"recipients refused: {exc}", permanent) from exc
        except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientRefused) as exc:
            await self.close()
            raise self._refused(exc, about_message=exc.code != 421) from exc
        except aiosmtplib.SMTPResponseException as exc:  # greeting, EHLO, AUTH, MAIL FROM: the relay, not the message
            await self.close()
            raise self._refused(exc, about_message=False) from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self.close()
            raise TransportError(f"relay unreachable: {type(exc).__name__}: {exc}", destination=True) from exc
        if errors and len(errors) == len(recipients):
            raise TransportError(f"every recipient refused: {errors}", permanent=True)

    @staticmethod
    def _refused(exc: aiosmtplib.SMTPResponseException, about_message: bool) -> TransportError:
        """A reply about this message is permanent when 5xx (RFC 5321 section 4.2.1); one about the relay
        itself (421 closing, a refused greeting, login or sender) holds every message, so none is failed."""
        if about_message:
            return TransportError(f"{exc.code} {exc.message}", permanent=500 <= exc.code < 600)
        return TransportError(f"{exc.code} {exc.message}", destination=True)

    async def probe(self) -> None:
        """Check that the relay answers (connect, NOOP) before trusting it with a row again."""
        try:
            client = await self._connect()
            await client.noop()
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self.close()
            raise TransportError(f"relay unreachable: {type(exc).__name__}: {exc}", destination=True) from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                client.close()


class MaildirDrop:
    """With no relay configured, mail is written to a Maildir so a newcomer can read what would have gone out."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        await asyncio.to_thread(self._write, raw)

    def _write(self, raw: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(self.path, create=True)
        try:
            box.add(raw)
        finally:
            box.close()

    async def probe(self) -> None:
        return None

    async def close(self) -> None:
        return None


def make_transport(relay_url: str | None, maildir: Path) -> MailTransport:
    if relay_url:
        return SmtpRelay(RelayAddress.parse(relay_url))
    return MaildirDrop(maildir)


def envelope_recipients(raw: bytes) -> list[str]:
    """Every address in To, Cc and Bcc. The raw header values are enough for the addresses, and reading them
    with compat32 costs a tenth of parsing every header into objects, which on the event loop held it up."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    values = [str(v) for name in ("to", "cc", "bcc") for v in headers.get_all(name, [])]
    return [addr for _, addr in email.utils.getaddresses(values) if "@" in addr]


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff from 30 s, capped at an hour, with jitter so retries do not arrive together."""
    seconds = min(30 * 2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
    return dt.timedelta(seconds=seconds * random.uniform(0.8, 1.2))


@dataclass(frozen=True)
class Verdict:
    """What became of a claimed row, recorded under its claim (``attempts``, which fences it)."""

    item_id: int
    attempts: int
    status: OutboxStatus  # SENT, FAILED, SKIPPED, or PENDING: tried again at ``retry_at``, or given back
    error: str | None = None  # None keeps the row's last error
    retry_at: dt.datetime | None = None  # None with PENDING: the claim is given back, the row keeps its place

    @classmethod
    def given_back(cls, item: OutboxItem, error: str | None = None) -> Verdict:
        return cls(item.id, item.attempts, OutboxStatus.PENDING, error)


class EmailDeliverer:
    """Drains the email rows of the outbox through a transport, oldest first.

    When the relay fails as a whole, the relay is backed off, not the row: the row and the rest of the batch
    are given back in their place, and once a probe finds the relay answering again they go out in the order
    they were queued. A row that fails for its own reason (a 4xx or 5xx about its recipients or content) gets
    its own retry time or is failed, and the rows behind it go on. A row that breaks the relay's connection
    twice in a row, with a good probe in between, is to blame and is retried on its own.
    """

    def __init__(self, sessions: sessionmaker[Session], transport: MailTransport, max_attempts: int = 12,
                 lease: dt.timedelta = LEASE) -> None:
        self.sessions = sessions
        self.transport = transport
        self.max_attempts = max_attempts
        self.relay = Destination("the SMTP relay")
        self.leases = LeaseKeeper(sessions, lease, SEND_MARGIN)
        self._unrecorded: list[Verdict] = []  # kept until the database takes them (it may be unreachable)
        self._probed = False  # the relay was suspect and a probe just found it answering
        self._suspect_row: int | None = None  # the row being sent when the relay last failed
        # The last claim took fewer rows than it asked for, so nothing else was due then: the delivery loop can
        # sleep until a wake-up (rows queued since) instead of looking again at once.
        self.drained = False

    async def deliver_due(self, limit: int = BATCH) -> int:
        """Send what is due now, oldest first; returns how many rows were handled (sent, failed, retried, skipped
        or given back because the relay failed). Returns 0 at once while the relay is backed off."""
        await self._record_unrecorded()
        if self.relay.wait_seconds() > 0 or not await self._relay_answers():
            return 0
        started = time.monotonic()
        items, suppressed = await asyncio.to_thread(self._claim, limit)
        self.drained = len(items) < limit
        self.leases.claimed(items, started)
        waiting = list(items)
        async with self.leases.kept():
            try:
                while waiting and self.leases.usable():
                    verdict = await self._attempt(waiting.pop(0), suppressed)
                    self._unrecorded.append(verdict)
                    if verdict.status == OutboxStatus.PENDING and verdict.retry_at is None:
                        break  # the relay failed: the rest keep their place behind this row
                    await self._record_unrecorded()
            finally:
                self._unrecorded.extend(Verdict.given_back(item) for item in waiting)
        await self._record_unrecorded()
        return len(items) - len(waiting)

    async def drain(self) -> int:
        """Deliver until nothing is due, or the relay is down (``pdubot outbox deliver``)."""
        total = 0
        while handled := await self.deliver_due():
            total += handled
        return total

    async def _relay_answers(self) -> bool:
        if not self.relay.suspect:
            return True
        try:
            await self.transport.probe()
        except TransportError as exc:
            self.relay.failed(str(exc))
            return False
        self._probed = True
        return True

    def _claim(self, limit: int) -> tuple[list[OutboxItem], set[str]]:
        """Lease the oldest due rows, and say which of their recipients must not be mailed (bounced, unsubscribed)."""
        with self.sessions() as session:
            items = claim_due(session, Channel.EMAIL, limit, self.leases.lease)
            return items, suppressed_among(session, {item.recipient for item in items})

    async def _attempt(self, item: OutboxItem, suppressed: set[str]) -> Verdict:
        if item.recipient in suppressed:
            return Verdict(item.id, item.attempts, OutboxStatus.SKIPPED, "recipient is undeliverable")
        probed, self._probed = self._probed, False
        try:
            await self.transport.send(item.body, item.sender, envelope_recipients(item.body) or [item.recipient])
        except TransportError as exc:
            logger.warning("outbox %s to %s failed: %s", item.id, item.recipient, exc)
            if exc.destination and not (probed and item.id == self._suspect_row):
                self._suspect_row = item.id
                self.relay.failed(str(exc))
                return Verdict.given_back(item, str(exc))
            return self._failed_on_its_own(item, exc)
        self.relay.recovered()
        return Verdict(item.id, item.attempts, OutboxStatus.SENT, "")

    def _failed_on_its_own(self, item: OutboxItem, exc: TransportError) -> Verdict:
        if exc.permanent or item.attempts >= self.max_attempts:
            return Verdict(item.id, item.attempts, OutboxStatus.FAILED, str(exc))
        return Verdict(item.id, item.attempts, OutboxStatus.PENDING, str(exc), utcnow() + backoff(item.attempts))

    async def _record_unrecorded(self) -> None:
        if not self._unrecorded:
            return
        verdicts = list(self._unrecorded)
        await asyncio.to_thread(self._record, verdicts)
        del self._unrecorded[:len(verdicts)]
        for verdict in verdicts:
            self.leases.release(verdict.item_id)

    def _record(self, verdicts: list[Verdict]) -> None:
        with self.sessions() as session:
            for v in verdicts:
                if v.status != OutboxStatus.PENDING:
                    settle(session, v.item_id, v.status, v.error or "", v.attempts)
                elif v.retry_at is not None:
                    mark_retry(session, v.item_id, v.error or "", v.retry_at, v.attempts)
                else:
                    give_back(session, v.item_id, v.attempts, v.error)
            session.commit()
