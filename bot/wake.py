"""Waking the delivery processes of a SQLite deployment as soon as rows are queued.

PostgreSQL has NOTIFY, and the service uses it (``bot/service.py``). SQLite has nothing like it, but the
processes sharing one SQLite file all run on one machine, so each process that delivers binds a Unix
datagram socket in ``var/wake/`` and a process that queued rows sends every other socket there an empty
datagram after its commit. Nothing depends on a datagram arriving: a lost one (a full buffer, a process
still starting) only means the rows are found at the next poll, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

FOLDER = "wake"
MAX_PATH = 100  # sun_path holds 108 bytes on Linux and 104 on the BSDs


class WakeSockets:
    """This process's wake-up socket, and the way to wake every other process's."""

    def __init__(self, var_dir: Path) -> None:
        self.folder = var_dir.resolve() / FOLDER
        self.own = self.folder / f"{os.getpid()}.sock"
        self._listener: socket.socket | None = None
        self._sender: socket.socket | None = None

    def listen(self, loop: asyncio.AbstractEventLoop, on_wake: Callable[[], None]) -> bool:
        """Call ``on_wake`` on ``loop`` whenever another process wakes this one. False when it cannot."""
        if len(str(self.own)) > MAX_PATH:
            logger.warning("the var directory's path is too long for a wake-up socket; delivery polls instead")
            return False
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.own.unlink(missing_ok=True)  # a process with our pid that died without cleaning up
            listener.setblocking(False)
            listener.bind(str(self.own))
        except OSError as exc:  # a read-only or foreign var directory: slower, not broken
            listener.close()
            logger.warning("cannot make a wake-up socket in %s (%s); delivery polls instead", self.folder, exc)
            return False
        loop.add_reader(listener.fileno(), self._drain, on_wake)
        self._listener = listener
        return True

    def _drain(self, on_wake: Callable[[], None]) -> None:
        """Read every datagram waiting (a burst of commits is one wake-up), then wake."""
        assert self._listener is not None
        try:
            while True:
                self._listener.recv(16)
        except BlockingIOError:
            pass
        on_wake()

    def wake_others(self) -> int:
        """Send each other process's socket a datagram; returns how many were sent. Never blocks, never raises."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        sent = 0
        try:
            paths = [path for path in self.folder.glob("*.sock") if path != self.own]
        except OSError:
            return 0
        for path in paths:
            try:
                self._sender.sendto(b"", str(path))
                sent += 1
            except BlockingIOError:
                pass  # its buffer is full: a wake-up is already waiting for it
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)  # the process died (kill -9) and left its socket behind
            except OSError as exc:
                logger.debug("could not wake %s: %s", path.name, exc)
        return sent

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._listener is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            self.own.unlink(missing_ok=True)
        if self._sender is not None:
            self._sender.close()
            self._sender = None
