"""Outbox delivery: a worker that sends queued email through the relay, or into a local Maildir.

Transient failures (4xx replies, connection errors) are retried with backoff; a 5xx reply is
permanent and the row stays visible as failed. A row is marked sent only after the relay accepted it,
so a crash between the two can send one message twice: the single documented duplicate window.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import email.utils
import logging
import mailbox
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
from sqlalchemy.orm import Session, sessionmaker

from storage.base import utcnow
from storage.enums import Channel, OutboxStatus
from storage.mailstate import is_suppressed
from storage.outbox import OutboxItem, claim_due, mark_retry, settle

logger = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=5)
MAX_BACKOFF = dt.timedelta(hours=1)


class TransportError(Exception):
    """A failed send. ``permanent`` errors are recorded; the others are retried with backoff."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class MailTransport(Protocol):
    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> None: ...

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
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            raise TransportError(f"{exc.code} {exc.message}", permanent=500 <= exc.code < 600) from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self.close()
            raise TransportError(f"relay unreachable: {type(exc).__name__}: {exc}") from exc
        if errors and len(errors) == len(recipients):
            raise TransportError(f"every recipient refused: {errors}", permanent=True)

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

    async def close(self) -> None:
        return None


def make_transport(relay_url: str | None, maildir: Path) -> MailTransport:
    if relay_url:
        return SmtpRelay(RelayAddress.parse(relay_url))
    return MaildirDrop(maildir)


def envelope_recipients(raw: bytes) -> list[str]:
    headers = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0], policy=email.policy.default)
    values = [str(v) for name in ("to", "cc", "bcc") for v in headers.get_all(name, [])]
    return [addr for _, addr in email.utils.getaddresses(values) if "@" in addr]


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff from 30 s, capped at an hour, with jitter so retries do not arrive together."""
    seconds = min(30 * 2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
    return dt.timedelta(seconds=seconds * random.uniform(0.8, 1.2))


class EmailDeliverer:
    """Drains the email rows of the outbox through a transport."""

    def __init__(self, sessions: sessionmaker[Session], transport: MailTransport, max_attempts: int = 12) -> None:
        self.sessions = sessions
        self.transport = transport
        self.max_attempts = max_attempts

    async def deliver_due(self, limit: int = 100) -> int:
        """Send what is due now; returns how many rows were handled (sent, failed, retried or skipped)."""
        items = await asyncio.to_thread(self._claim, limit)
        for item in items:
            await self._deliver_one(item)
        return len(items)

    async def drain(self) -> int:
        """Deliver until nothing is due (``pdubot outbox deliver``)."""
        total = 0
        while handled := await self.deliver_due():
            total += handled
        return total

    def _claim(self, limit: int) -> list[OutboxItem]:
        with self.sessions() as session:
            return claim_due(session, Channel.EMAIL, limit, LEASE)

    async def _deliver_one(self, item: OutboxItem) -> None:
        if await asyncio.to_thread(self._suppressed, item.recipient):
            await asyncio.to_thread(self._finish, item.id, OutboxStatus.SKIPPED, "recipient is undeliverable")
            return
        try:
            await self.transport.send(item.body, item.sender, envelope_recipients(item.body) or [item.recipient])
        except TransportError as exc:
            logger.warning("outbox %s to %s failed: %s", item.id, item.recipient, exc)
            if exc.permanent or item.attempts >= self.max_attempts:
                await asyncio.to_thread(self._finish, item.id, OutboxStatus.FAILED, str(exc))
            else:
                await asyncio.to_thread(self._retry, item.id, str(exc), utcnow() + backoff(item.attempts))
            return
        await asyncio.to_thread(self._finish, item.id, OutboxStatus.SENT, "")

    def _suppressed(self, address: str) -> bool:
        with self.sessions() as session:
            return is_suppressed(session, address)

    def _finish(self, item_id: int, status: OutboxStatus, error: str) -> None:
        with self.sessions() as session:
            settle(session, item_id, status, error)
            session.commit()

    def _retry(self, item_id: int, error: str, at: dt.datetime) -> None:
        with self.sessions() as session:
            mark_retry(session, item_id, error, at)
            session.commit()
