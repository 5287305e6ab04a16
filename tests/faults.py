"""Fault injection for tests: a ``pdubot run`` process that can be killed and restarted, a sender that retries
like a mail server, a TCP proxy that can be cut, and readers for what ended up in the database and the Maildir.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import random
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import Direction
from storage.outbox import OutboxItem
from storage.tickets import Message
from tests.factories import MAILBOX
from tests.servers import free_port, loop_thread, run_on, wait_until

PDUBOT = str(Path(sys.executable).parent / "pdubot")
START_SECONDS = 30.0


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def service_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """``env`` with free ports for SMTP intake and HTTP, and an outbox that polls often."""
    return {**env, "SMTP_LISTEN": f"127.0.0.1:{free_port()}", "HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "OUTBOX_POLL_SECONDS": "0.2", **extra}


@dataclass
class Kill:
    pid: int
    at: float  # time.time(), comparable with Maildir file names


@dataclass
class ServiceProcess:
    """``pdubot run`` as its own process, started again after every kill, with one log across restarts."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    kills: list[Kill] = field(default_factory=list)
    starts: int = 0

    @property
    def smtp_address(self) -> tuple[str, int]:
        host, port = self.env["SMTP_LISTEN"].rsplit(":", 1)
        return host, int(port)

    @property
    def health_url(self) -> str:
        return f"http://{self.env['HTTP_LISTEN']}/healthz"

    def start(self) -> None:
        """Start the service and wait until /healthz answers, so intake is listening too."""
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen([PDUBOT, "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        if not wait_until(lambda: healthy(self.health_url) or self.process.poll() is not None, timeout=START_SECONDS):
            raise AssertionError(f"pdubot run did not become healthy:\n{self.log()}")
        if self.process.poll() is not None:
            raise AssertionError(f"pdubot run exited with {self.process.returncode}:\n{self.log()}")

    def kill(self) -> Kill:
        """SIGKILL: no handler runs, no transaction is finished, nothing is flushed."""
        assert self.process is not None
        kill = Kill(self.process.pid, time.time())
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills.append(kill)
        return kill

    def stop(self) -> None:
        """SIGTERM, the clean shutdown, and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"pdubot run ignored SIGTERM:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else "(no log)"


@contextmanager
def running_service(env: dict[str, str], log_path: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(env, log_path)
    service.start()
    try:
        yield service
    finally:
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
            service.process.wait()


class PermanentRefusal(AssertionError):
    """The service answered 5xx to a message a retrying sender would then bounce: a lost message."""


@dataclass
class SenderStats:
    accepted: int = 0
    refused_connections: int = 0  # connection refused or reset, or dropped mid-transaction
    temporary_replies: dict[int, int] = field(default_factory=dict)  # 4xx code -> how many
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_reply(self, code: int) -> None:
        with self.lock:
            self.temporary_replies[code] = self.temporary_replies.get(code, 0) + 1

    def count_refusal(self) -> None:
        with self.lock:
            self.refused_connections += 1

    def count_accepted(self) -> None:
        with self.lock:
            self.accepted += 1


class RetryingSender:
    """Sends like a mail server does (RFC 5321 section 4.5.4.1): a 4xx or a broken connection means try again.

    One connection is reused until it fails. A 5xx is a permanent refusal and fails the test.
    """

    def __init__(self, address: tuple[str, int], stats: SenderStats, give_up_after: float = 90.0) -> None:
        self.address = address
        self.stats = stats
        self.give_up_after = give_up_after
        self._client: smtplib.SMTP | None = None

    def send(self, mail_from: str, raw: bytes) -> None:
        deadline = time.monotonic() + self.give_up_after
        pause = 0.05
        while True:
            if self._try_once(mail_from, raw):
                self.stats.count_accepted()
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not accept a message within {self.give_up_after} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _try_once(self, mail_from: str, raw: bytes) -> bool:
        try:
            client = self._connect()
            client.sendmail(mail_from, [MAILBOX], raw)
            return True
        except smtplib.SMTPRecipientsRefused as exc:
            (code, message), = exc.recipients.values()
            self._transient(code, message)
        except smtplib.SMTPResponseException as exc:
            self._transient(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError):
            self.stats.count_refusal()
        self.close()
        return False

    def _transient(self, code: int, message: bytes | str) -> None:
        if code >= 500:
            raise PermanentRefusal(f"the service refused a message for good: {code} {message!r}")
        self.stats.count_reply(code)

    def _connect(self) -> smtplib.SMTP:
        if self._client is None:
            self._client = smtplib.SMTP(*self.address, timeout=15)
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except OSError:
                pass  # the connection is already broken, which is why it is being closed


class Worker(threading.Thread):
    """A thread whose exception is raised again in the test by ``join_and_check``."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread, which raises it)
            self.error = exc

    def join_and_check(self, timeout: float) -> None:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"{self.name} did not finish within {timeout} s")
        if self.error is not None:
            raise self.error


def send_all(address: tuple[str, int], messages: list[tuple[str, bytes]], senders: int,
             stats: SenderStats) -> list[Worker]:
    """Start ``senders`` threads that share ``messages`` round-robin, each sending its share in order."""

    def share(n: int) -> Callable[[], None]:
        def work() -> None:
            sender = RetryingSender(address, stats)
            try:
                for mail_from, raw in messages[n::senders]:
                    sender.send(mail_from, raw)
            finally:
                sender.close()

        return work

    workers = [Worker(share(n), f"sender-{n}") for n in range(senders)]
    for worker in workers:
        worker.start()
    return workers


@dataclass(frozen=True)
class KillPlan:
    """When to kill: once progress reaches each threshold, after a short random delay.

    The thresholds spread the kills over the run; the delay lets each kill land anywhere in the work under
    way (inside a transaction, between the commit and the 250, in the middle of an outbox send).
    """

    seed: int
    thresholds: tuple[int, ...]
    delays: tuple[float, ...]

    @classmethod
    def seeded(cls, seed: int, total: int, kills: int, max_delay: float = 0.06) -> KillPlan:
        rng = random.Random(seed)
        margin = max(total // 20, 1)
        thresholds = sorted(rng.sample(range(margin, total - margin), kills))
        return cls(seed, tuple(thresholds), tuple(rng.uniform(0, max_delay) for _ in thresholds))


def killer(service: ServiceProcess, plan: KillPlan, progress: Callable[[], int]) -> Worker:
    """A thread that SIGKILLs the service at each point of ``plan`` and starts it again at once."""

    def work() -> None:
        for threshold, delay in zip(plan.thresholds, plan.delays, strict=True):
            if not wait_until(lambda at=threshold: progress() >= at, timeout=120, interval=0.01):
                raise AssertionError(f"progress stuck at {progress()} before kill at {threshold}")
            time.sleep(delay)
            service.kill()
            service.start()

    worker = Worker(work, "killer")
    worker.start()
    return worker


# --- What ended up where -------------------------------------------------------------------------------------

def inbound_by_message_id(sessions: sessionmaker[Session]) -> dict[str, list[int | None]]:
    """Each stored inbound Message-ID with the ticket id of every row stored under it."""
    with sessions() as session:
        rows = session.execute(
            sa.select(Message.message_id, Message.ticket_id).where(Message.direction == Direction.IN)
        ).all()
    found: dict[str, list[int | None]] = {}
    for message_id, ticket_id in rows:
        found.setdefault(message_id, []).append(ticket_id)
    return found


def ack_attempts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """For every acknowledgement in the outbox: the Message-ID it answers, and how often it was claimed."""
    with sessions() as session:
        inbound = dict(session.execute(
            sa.select(Message.id, Message.message_id).where(Message.direction == Direction.IN)).all())
        acks = session.execute(
            sa.select(OutboxItem.dedupe_key, OutboxItem.attempts).where(OutboxItem.dedupe_key.like("ack:%"))).all()
    return {inbound[int(key.removeprefix("ack:"))]: attempts for key, attempts in acks}


@dataclass(frozen=True)
class MaildirCopy:
    """One email the outbox wrote to the Maildir, and which process wrote it, from its unique name.

    The stdlib names a Maildir file ``SECONDS.MMICROSECONDSPPIDQCOUNTER.HOST``; the counter grows within
    a process, so the last file a process wrote has its largest (time, counter).
    """

    in_reply_to: str
    pid: int
    order: tuple[int, int, int]

    @classmethod
    def read(cls, path: Path) -> MaildirCopy:
        seconds, rest = path.name.split(".M", 1)
        micros, rest = rest.split("P", 1)
        pid, rest = rest.split("Q", 1)
        counter = rest.split(".", 1)[0]
        with open(path, "rb") as handle:
            headers = email.message_from_binary_file(handle, policy=email.policy.default)
        in_reply_to = str(headers.get("In-Reply-To", "")).strip().strip("<>")
        return cls(in_reply_to, int(pid), (int(seconds), int(micros), int(counter)))

    @property
    def written_at(self) -> float:
        return self.order[0] + self.order[1] / 1e6


def maildir_copies(maildir: Path) -> list[MaildirCopy]:
    """Every delivered email, oldest first. Files still in tmp/ were never delivered (the writer died)."""
    files = [p for sub in ("new", "cur") if (maildir / sub).is_dir() for p in (maildir / sub).iterdir()]
    return sorted((MaildirCopy.read(p) for p in files), key=lambda c: c.order)


def explain_duplicates(copies: list[MaildirCopy], kills: list[Kill]) -> list[str]:
    """Every duplicated acknowledgement that is *not* the documented window, described; empty when all are.

    The window: the outbox wrote the email, then its process died before marking the row sent, and the row
    went out again once its lease ran out. So the first copy must come from a killed process, be the last
    email that process wrote, and be written before it was killed; and there are never more than two.
    """
    killed_at = {k.pid: k.at for k in kills}
    last_by_pid: dict[int, MaildirCopy] = {}
    for copy in copies:
        last_by_pid[copy.pid] = copy
    by_reply: dict[str, list[MaildirCopy]] = {}
    for copy in copies:
        by_reply.setdefault(copy.in_reply_to, []).append(copy)
    problems = []
    for reply_to, group in by_reply.items():
        if len(group) == 1:
            continue
        first = group[0]
        if len(group) > 2:
            problems.append(f"{reply_to}: {len(group)} copies")
        elif first.pid not in killed_at:
            problems.append(f"{reply_to}: first copy from pid {first.pid}, which was not killed")
        elif last_by_pid[first.pid] != first:
            problems.append(f"{reply_to}: first copy was not the last email pid {first.pid} wrote before its kill")
        elif first.written_at > killed_at[first.pid] + 0.01:
            problems.append(f"{reply_to}: first copy written after pid {first.pid} was killed")
    return problems


# --- A TCP proxy that can be cut -------------------------------------------------------------------------------

class TcpProxy:
    """Forwards a loopback port to a server. ``cut`` refuses new connections and resets open ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        """Like the server going away: nothing listens, and every open connection is reset."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the other direction sees the same reset and closes its side
        finally:
            self._open.discard(writer)
            writer.transport.abort()


@dataclass
class ProxyControl:
    """The proxy's switches, callable from the test thread."""

    proxy: TcpProxy
    loop: asyncio.AbstractEventLoop

    @property
    def port(self) -> int:
        return self.proxy.port

    def cut(self) -> None:
        run_on(self.loop, self.proxy.cut())

    def restore(self) -> None:
        run_on(self.loop, self.proxy.listen())


@contextmanager
def tcp_proxy(target: tuple[str, int]) -> Iterator[ProxyControl]:
    with loop_thread() as loop:
        proxy = TcpProxy(target)
        run_on(loop, proxy.listen())
        try:
            yield ProxyControl(proxy, loop)
        finally:
            run_on(loop, proxy.cut())


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def fault_seed(default: int) -> int:
    """The seed of a run: PDUBOT_FAULT_SEED replays a failing one."""
    return int(os.environ.get("PDUBOT_FAULT_SEED", default))
