"""SMTP intake: an aiosmtpd handler that accepts mail for the mailbox and its aliases only.

It does protocol work alone (check recipients, hand the bytes to the inbox pipeline, answer). The
250 goes out only after the pipeline has committed the message; a storage failure answers 451 so the
sending server keeps the message and retries (RFC 5321 section 4.2.5).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.smtp import SMTP, Envelope, Session as SmtpSession
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import Source
from workflows.inbox import Receipt, receive
from workflows.policy import MailboxPolicy

logger = logging.getLogger(__name__)

INTAKE_THREADS = min(32, (os.cpu_count() or 1) + 4)  # as many as the loop's default pool has


class MailboxHandler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: MailboxPolicy,
        on_receipt: Callable[[Receipt], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.on_receipt = on_receipt
        # Threads of its own: in a burst of mail, messages waiting to be stored queue here, not in front of
        # the outbox's and Slack's database work on the loop's default pool, which would stall delivery.
        self.executor = ThreadPoolExecutor(INTAKE_THREADS, thread_name_prefix="smtp-intake")

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.strip().lower() not in self.policy.addresses:
            return f"550 5.1.1 <{address}>: this server only accepts mail for {self.policy.address}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        peer = session.peer[0] if session.peer else "unknown"
        try:
            receipt = await asyncio.get_running_loop().run_in_executor(
                self.executor, receive, self.sessions, raw, Source.SMTP, self.policy, f"smtp:{peer}"
            )
        except Exception:
            logger.exception("could not store a message from %s; answering 451 so the sender retries", peer)
            return "451 4.3.0 Message not stored, please try again later"
        if self.on_receipt is not None:
            self.on_receipt(receipt)
        return f"250 2.0.0 OK stored as message {receipt.message_pk}"


def make_smtp_factory(handler: MailboxHandler, max_bytes: int) -> Callable[[], SMTP]:
    """A protocol factory for ``loop.create_server``; aiosmtpd answers 552 past ``max_bytes``."""

    def factory() -> SMTP:
        return SMTP(handler, data_size_limit=max_bytes, enable_SMTPUTF8=True, hostname="pdubot", ident="pdubot")

    return factory


async def start_smtp_server(
    handler: MailboxHandler, host: str, port: int, max_bytes: int
) -> asyncio.base_events.Server:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(make_smtp_factory(handler, max_bytes), host=host, port=port)
    logger.info("SMTP intake listening on %s:%s", host, port)
    return server
