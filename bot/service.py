"""``pdubot run``: every long-running part in one asyncio process, or only the parts a Procfile line asks for."""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

import psycopg
import sqlalchemy as sa
from slack_bolt.async_app import AsyncApp

from bot.delivery import EmailDeliverer, make_transport
from bot.runtime import Runtime
from bot.scheduler import start_scheduler
from bot.secret_key import load_secret_key
from bot.settings import split_host_port
from bot.slack import app as slack
from bot.smtp_intake import MailboxHandler, start_smtp_server
from bot.web import make_web_app, start_web
from bot.wake import WakeSockets
from bot.web_unsubscribe import register as register_unsubscribe

logger = logging.getLogger(__name__)

WAKE_CHANNEL = "pdubot_outbox"  # the NOTIFY channel of the outbox trigger (migration 0004): rows were queued
DELIVERY_PARTS = frozenset({"outbox", "slack"})


class Part(str, enum.Enum):
    INTAKE = "intake"  # SMTP, and IMAP when IMAP_URL is set
    WEB = "web"  # /healthz, Slack HTTP mode, unsubscribe
    OUTBOX = "outbox"
    SCHEDULER = "scheduler"  # certificate-count nags, mailings, the monthly report
    SLACK = "slack"  # Slack posts from the outbox, in order; Socket Mode when SLACK_APP_TOKEN is set


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
        self.slack_wake = asyncio.Event()  # its own event: each delivery loop clears the one it waits on
        self._slack_app: AsyncApp | None = None
        self._threads_stop = threading.Event()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.wake_sockets = WakeSockets(runtime.settings.var_dir)
        self._delivers_all_here = DELIVERY_PARTS <= {part.value for part in parts}  # no other process to wake

    def wake_outbox(self, *_: object) -> None:
        """Rows were queued: wake the delivery loops here, and on SQLite those of other processes too (the
        Procfile runs each part alone), which would otherwise find the rows only at their next poll. On
        PostgreSQL the database wakes them: a trigger on the outbox sends NOTIFY when a transaction that queued
        rows commits (migration 0004). On SQLite the wake-up is a datagram to each process's socket
        (``bot/wake.py``)."""
        self._wake_here()
        if not self._delivers_all_here and not self._on_postgresql:
            self.wake_sockets.wake_others()

    def _wake_here(self) -> None:
        self.outbox_wake.set()
        self.slack_wake.set()

    @property
    def _on_postgresql(self) -> bool:
        return self.runtime.engine.dialect.name == "postgresql"

    async def listen_for_wakeups(self) -> float:
        """LISTEN on PostgreSQL and wake the delivery loops here whenever another process queued rows."""
        url = sa.make_url(self.runtime.settings.database_url).set(drivername="postgresql")
        try:
            async with await psycopg.AsyncConnection.connect(url.render_as_string(hide_password=False),
                                                             autocommit=True) as connection:
                await connection.execute(f"LISTEN {WAKE_CHANNEL}")
                self._wake_here()  # anything queued while not listening
                while not self.stop.is_set():
                    async for _ in connection.notifies(timeout=1.0):
                        self._wake_here()
        except psycopg.Error as exc:
            logger.warning("cannot listen for queued rows (%s); polling until it can", type(exc).__name__)
        return 5.0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if Part.INTAKE in self.parts:
            await self._start_intake()
        if Part.WEB in self.parts:
            await self._start_web()
        if Part.OUTBOX in self.parts:
            self._start_outbox()
        if Part.SCHEDULER in self.parts:
            self._start_scheduler()
        if Part.SLACK in self.parts:
            self._start_slack()
        if self.parts & {Part.OUTBOX, Part.SLACK}:
            self._listen_for_other_processes()

    def _listen_for_other_processes(self) -> None:
        """Be woken by other processes that queue rows: LISTEN on PostgreSQL, a wake-up socket on SQLite."""
        if self._on_postgresql:
            self._tasks.append(asyncio.create_task(keep_running("wake-up listener", self.listen_for_wakeups,
                                                                self.stop)))
        else:
            self.wake_sockets.listen(self._loop, self._wake_here)

    async def _start_intake(self) -> None:
        s = self.runtime.settings
        handler = MailboxHandler(self.runtime.sessions, s.policy, on_receipt=self.wake_outbox)
        host, port = split_host_port(s.smtp_listen, 2525)
        server = await start_smtp_server(handler, host, port, s.smtp_max_bytes)

        async def close_smtp() -> None:
            server.close()
            await server.wait_closed()
            handler.executor.shutdown(wait=False)

        self._closers.append(close_smtp)
        if s.imap_url is not None:
            from bot.imap_intake import ImapIntake

            intake = ImapIntake.from_settings(self.runtime.sessions, s, on_receipt=self.wake_outbox_threadsafe)
            self._tasks.append(asyncio.create_task(asyncio.to_thread(intake.run_forever, self._threads_stop)))

    def wake_outbox_threadsafe(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self.wake_outbox)

    async def _start_web(self) -> None:
        host, port = split_host_port(self.runtime.settings.http_listen, 3000)
        app = make_web_app(self.runtime.sessions)
        register_unsubscribe(app, self.runtime.sessions, load_secret_key(self.runtime.settings))
        if slack.mode_of(self.runtime.settings) == slack.Mode.HTTP and slack.can_serve_http(self.runtime.settings):
            slack.mount_events(app, self.slack_app())
        runner = await start_web(app, host, port)
        self._closers.append(runner.cleanup)

    def _start_outbox(self) -> None:
        s = self.runtime.settings
        relay = s.smtp_relay_url.get_secret_value() if s.smtp_relay_url else None
        deliverer = EmailDeliverer(self.runtime.sessions, make_transport(relay, s.outbox_maildir), s.outbox_max_attempts)

        async def step() -> float:
            self.outbox_wake.clear()  # before looking, so a wake-up that comes meanwhile is not lost
            if await deliverer.deliver_due() and not deliverer.drained:
                return 0  # a full batch: more may be due now
            try:
                await asyncio.wait_for(self.outbox_wake.wait(), timeout=s.outbox_poll_seconds)
            except TimeoutError:
                pass
            return 0

        self._tasks.append(asyncio.create_task(keep_running("outbox delivery", step, self.stop)))
        self._closers.append(deliverer.transport.close)

    def slack_app(self) -> AsyncApp:
        """One Bolt app per process, shared by HTTP mode and Socket Mode."""
        if self._slack_app is None:
            self._slack_app = slack.build_app(self.runtime.settings, self.runtime.sessions, self.wake_outbox)
        return self._slack_app

    def _start_slack(self) -> None:
        s = self.runtime.settings
        if slack.mode_of(s) == slack.Mode.OFF:
            logger.info("Slack is not configured (SLACK_BOT_TOKEN, SLACK_CHANNEL): its posts wait in the outbox")
            return
        deliverer = slack.make_deliverer(s, self.runtime.sessions)
        step = slack.delivery_step(deliverer, self.slack_wake, s.outbox_poll_seconds)
        self._tasks.append(asyncio.create_task(keep_running("Slack delivery", step, self.stop)))
        self._closers.append(deliverer.close)
        if s.slack_app_token is not None:
            socket = slack.SocketMode(self.slack_app(), s.slack_app_token.get_secret_value())
            self._tasks.append(asyncio.create_task(keep_running("Slack Socket Mode", socket.step, self.stop)))
            self._closers.append(socket.close)

    def _start_scheduler(self) -> None:
        self._closers.append(start_scheduler(self.runtime, on_queued=self.wake_outbox_threadsafe))

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
        self._wake_here()  # the delivery loops sleep on their wake events; let them see the stop now
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                logger.exception("error while closing")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.wake_sockets.close(self._loop)
        logger.info("stopped")
