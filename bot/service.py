"""``pdubot run``: every long-running part in one asyncio process, or only the parts a Procfile line asks for."""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

from bot.delivery import EmailDeliverer, make_transport
from bot.runtime import Runtime
from bot.settings import split_host_port
from bot.smtp_intake import MailboxHandler, start_smtp_server
from bot.web import make_web_app, start_web

logger = logging.getLogger(__name__)


class Part(str, enum.Enum):
    INTAKE = "intake"  # SMTP, and IMAP when IMAP_URL is set
    WEB = "web"  # /healthz, Slack HTTP mode, unsubscribe
    OUTBOX = "outbox"


async def keep_running(name: str, step: Callable[[], Awaitable[float]], stop: asyncio.Event) -> None:
    """Run ``step`` until stopped. A failing step is logged with its traceback and retried, never fatal."""
    while not stop.is_set():
        try:
            pause = await step()
        except Exception:
            logger.exception("%s failed; retrying shortly", name)
            pause = 5.0
        if pause > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause)
            except TimeoutError:
                pass


class Service:
    def __init__(self, runtime: Runtime, parts: set[Part]) -> None:
        self.runtime = runtime
        self.parts = parts
        self.stop = asyncio.Event()
        self.outbox_wake = asyncio.Event()
        self._threads_stop = threading.Event()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def wake_outbox(self, *_: object) -> None:
        self.outbox_wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if Part.INTAKE in self.parts:
            await self._start_intake()
        if Part.WEB in self.parts:
            await self._start_web()
        if Part.OUTBOX in self.parts:
            self._start_outbox()

    async def _start_intake(self) -> None:
        s = self.runtime.settings
        handler = MailboxHandler(self.runtime.sessions, s.policy, on_receipt=self.wake_outbox)
        host, port = split_host_port(s.smtp_listen, 2525)
        server = await start_smtp_server(handler, host, port, s.smtp_max_bytes)

        async def close_smtp() -> None:
            server.close()
            await server.wait_closed()

        self._closers.append(close_smtp)
        if s.imap_url is not None:
            from bot.imap_intake import ImapIntake

            intake = ImapIntake.from_settings(self.runtime.sessions, s, on_receipt=self.wake_outbox_threadsafe)
            self._tasks.append(asyncio.create_task(asyncio.to_thread(intake.run_forever, self._threads_stop)))

    def wake_outbox_threadsafe(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self.outbox_wake.set)

    async def _start_web(self) -> None:
        host, port = split_host_port(self.runtime.settings.http_listen, 3000)
        runner = await start_web(make_web_app(self.runtime.sessions), host, port)
        self._closers.append(runner.cleanup)

    def _start_outbox(self) -> None:
        s = self.runtime.settings
        relay = s.smtp_relay_url.get_secret_value() if s.smtp_relay_url else None
        deliverer = EmailDeliverer(self.runtime.sessions, make_transport(relay, s.outbox_maildir), s.outbox_max_attempts)

        async def step() -> float:
            handled = await deliverer.deliver_due()
            if handled:
                return 0
            self.outbox_wake.clear()
            try:
                await asyncio.wait_for(self.outbox_wake.wait(), timeout=s.outbox_poll_seconds)
            except TimeoutError:
                pass
            return 0

        self._tasks.append(asyncio.create_task(keep_running("outbox delivery", step, self.stop)))
        self._closers.append(deliverer.transport.close)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        await self.start()
        logger.info("pdubot running: %s", ", ".join(sorted(p.value for p in self.parts)))
        await self.stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        logger.info("shutting down")
        self._threads_stop.set()
        self.stop.set()
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                logger.exception("error while closing")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("stopped")
