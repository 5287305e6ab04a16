"""Run the service's own asyncio servers on a background thread, for tests that talk to them over sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on its own thread until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def run_on(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any], timeout: float = 30) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], bool], timeout: float = 10, interval: float = 0.05) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class SinkHandler:
    """An aiosmtpd handler that plays a relay: it keeps what it accepts, or answers a scripted code."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.script: list[str] = []  # replies to DATA, used up one by one before accepting normally

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.script:
            return self.script.pop(0)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@contextmanager
def smtp_sink(port: int | None = None) -> Iterator[tuple[SinkHandler, int]]:
    """A local relay on a free port (or ``port``) for the outbox to deliver to."""
    from aiosmtpd.controller import Controller

    handler = SinkHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()
