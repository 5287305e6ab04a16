"""End-to-end latency under a steady load: from an email's SMTP 250 to its Slack card, and to its acknowledgement
reaching the relay, through the real service parts (SMTP intake, outbox delivery, Slack delivery).

``pdubot run --only intake --only outbox --only slack`` runs as its own process on a fresh database (SQLite or
PostgreSQL), with Slack pointed at the local fake Web API (tests/slack_fake.py) and the relay at a local
aiosmtpd sink, both in this process. Load is open-loop: message i is sent at ``start + i / rate`` over several
client connections, whether or not earlier messages are done. Each message's clock starts when smtplib's
``sendmail`` returns on the 250 reply to DATA, and stops when its card's chat.postMessage reaches the fake (and,
separately, when its acknowledgement reaches the relay).

The baseline, in the same run and under the same load, is the floor of this path: a bare aiosmtpd server in its
own process that answers 250 and then posts the card to the same fake at once, with no database. The target is
a card p95 under 300 ms.

    python benchmarks/latency.py            # 10 and 50 messages/s, 30 s each, SQLite and PostgreSQL
    python benchmarks/latency.py --quick    # 10 and 50 messages/s, 3 s each (tests/test_benchmarks_quick.py)
    python benchmarks/latency.py --rates 50 --seconds 60 --databases postgresql --json
    python benchmarks/latency.py --procfile # intake, outbox and Slack as separate processes
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import os
import platform
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.intake import postgres_reachable, scratch_database  # noqa: E402
from benchmarks.slack_latency import MAILBOX, PDUBOT, card_times, email_for, percentile, wait_for_port  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.slack_fake import BOT_TOKEN, CHANNEL, FakeSlack, fake_slack  # noqa: E402

TARGET_P95 = 0.3
CONNECTIONS = 8
WARM_UP = 5  # messages sent and drained before the clock runs: first-use imports and caches
DRAIN_SECONDS = 60.0
PARTS = ("intake", "outbox", "slack")  # the parts under test, and the Procfile's processes in this order


# --- The relay: a sink that notes when each acknowledgement arrived --------------------------------------------

class TimedSink:
    """An aiosmtpd handler playing the relay: the monotonic time each acknowledgement arrived, by In-Reply-To."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.monotonic()
        headers = email.message_from_bytes(envelope.original_content.split(b"\r\n\r\n", 1)[0],
                                           policy=email.policy.compat32)
        self.arrived.setdefault(str(headers.get("In-Reply-To", "")).strip().strip("<>"), at)
        return "250 OK"


@contextmanager
def timed_relay() -> Iterator[tuple[TimedSink, int]]:
    from aiosmtpd.controller import Controller

    sink = TimedSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


# --- Open-loop load --------------------------------------------------------------------------------------------

@dataclass
class Sent:
    tag: str
    message_id: str
    scheduled: float
    accepted: float  # when sendmail returned on the 250


@dataclass
class Load:
    """Messages ``first`` .. ``first + count - 1`` at ``rate`` a second, over ``connections`` connections."""

    smtp_port: int
    rate: float
    count: int
    first: int = 0
    connections: int = CONNECTIONS
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _next: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        start = time.monotonic() + 0.2
        threads = [threading.Thread(target=self._connection, args=(start,)) for _ in range(self.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _take(self) -> int | None:
        with self._lock:
            n = next(self._next)
        return n if n < self.count else None

    def _connection(self, start: float) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60) as client:
            while (n := self._take()) is not None:
                scheduled = start + n / self.rate
                time.sleep(max(scheduled - time.monotonic(), 0))
                self._send(client, self.first + n, scheduled)

    def _send(self, client: smtplib.SMTP, n: int, scheduled: float) -> None:
        message = email_for(n)
        raw = message.as_bytes()
        try:
            client.sendmail(str(message["From"]).split("<")[1].rstrip(">"), [MAILBOX], raw)
        except smtplib.SMTPException as exc:
            with self._lock:
                self.errors.append(f"{n}: {exc}")
            return
        accepted = time.monotonic()  # sendmail returns on the 250 reply to DATA
        with self._lock:
            self.sent.append(Sent(f"bench-{n:04d}", str(message["Message-ID"]).strip("<>"), scheduled, accepted))


# --- What one run gives ----------------------------------------------------------------------------------------

def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {"p50": round(percentile(values, 50), 4), "p95": round(percentile(values, 95), 4),
            "p99": round(percentile(values, 99), 4), "max": round(max(values), 4)}


def wait_for(done: callable, timeout: float) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def figures_of(load: Load, cards: dict[str, float], acks: dict[str, float] | None) -> dict[str, object]:
    card = [cards[s.tag] - s.accepted for s in load.sent if s.tag in cards]
    result: dict[str, object] = {
        "offered": load.count, "accepted": len(load.sent), "refused": len(load.errors),
        "cards": sum(s.tag in cards for s in load.sent),
        "card_s": spread(card),
        # How late the 250 came after the message was due to be sent: intake keeping up with the load.
        "intake_s": spread([s.accepted - s.scheduled for s in load.sent]),
    }
    if acks is not None:
        result["acks"] = sum(s.message_id in acks for s in load.sent)
        result["ack_s"] = spread([acks[s.message_id] - s.accepted for s in load.sent if s.message_id in acks])
    return result


def service_env(tmp: str, database_url: str, fake: FakeSlack, relay_port: int, smtp_port: int) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PDUBOT_VAR_DIR": f"{tmp}/var",
           "SMTP_LISTEN": f"127.0.0.1:{smtp_port}", "HTTP_LISTEN": f"127.0.0.1:{free_port()}",
           "SMTP_RELAY_URL": f"smtp://127.0.0.1:{relay_port}",
           "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": fake.api_url, "SLACK_CHANNEL": CHANNEL,
           "LOG_LEVEL": "WARNING"}
    for key in ("SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "IMAP_URL", "OUTBOX_POLL_SECONDS"):
        env.pop(key, None)  # the default poll interval: latency must not depend on it
    return env


@contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str], log: Path, smtp_port: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start every command (the first listens for SMTP) and stop them all at the end."""
    with open(log, "wb") as out:
        procs = [subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT) for command in commands]
        try:
            wait_for_port(smtp_port, procs[0])
            yield procs
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)


def service_commands(procfile: bool) -> list[list[str]]:
    """``pdubot run`` with the three parts in one process, or one process each as the Procfile runs them."""
    if procfile:
        return [[PDUBOT, "run", "--only", part] for part in PARTS]
    return [[PDUBOT, "run", *(arg for part in PARTS for arg in ("--only", part))]]


def measure(
    load: Load, fake: FakeSlack, sink: TimedSink | None, service_cpu: Callable[[], list[float]] = lambda: [0.0]
) -> dict[str, object]:
    """Warm up, send the load, and wait until every card (and acknowledgement) arrived or the drain timed out.

    ``service_cpu`` is the CPU time each of the service's processes has used so far: the figures include what
    they used per message between the warm-up and the end of the drain, in all and by process.
    """
    Load(load.smtp_port, rate=20, count=WARM_UP, first=9000, connections=1).run()
    wait_for(lambda: len(card_times(fake)) >= WARM_UP, DRAIN_SECONDS)
    cpu_before = service_cpu()
    load.run()
    tags = {f"bench-{load.first + n:04d}" for n in range(load.count)}
    acks = {s.message_id for s in load.sent} if sink is not None else set()
    wait_for(lambda: tags <= set(card_times(fake)) and acks <= set(sink.arrived if sink else ()), DRAIN_SECONDS)
    figures = figures_of(load, card_times(fake), sink.arrived if sink is not None else None)
    used = [(after - before) * 1000 / max(load.count, 1) for before, after in zip(cpu_before, service_cpu())]
    figures["cpu_ms_per_message"] = round(sum(used), 1)
    figures["cpu_ms_per_message_by_process"] = [round(ms, 1) for ms in used]
    return figures


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, fields 14 and 15


def run_service(database: str, rate: float, seconds: float, procfile: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, scratch_database(database, Path(tmp)) as url, \
            fake_slack() as fake, timed_relay() as (sink, relay_port):
        smtp_port = free_port()
        env = service_env(tmp, url, fake, relay_port, smtp_port)
        with processes(service_commands(procfile), env, Path(tmp) / "service.log", smtp_port) as procs:
            figures = measure(Load(smtp_port, rate, int(rate * seconds)), fake, sink,
                              lambda: [cpu_seconds(proc.pid) or 0.0 for proc in procs])
        duplicates = sum(n > 1 for n in _cards_per_tag(fake).values())
    return {"database": database, "rate": rate, "seconds": seconds, "duplicate_cards": duplicates, **figures}


def run_floor(rate: float, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, fake_slack() as fake:
        smtp_port = free_port()
        command = [sys.executable, __file__, "--floor-server", str(smtp_port), fake.api_url]
        with processes([command], dict(os.environ), Path(tmp) / "floor.log", smtp_port) as (floor,):
            figures = measure(Load(smtp_port, rate, int(rate * seconds)), fake, None,
                              lambda: [cpu_seconds(floor.pid) or 0.0])
    return {"database": "none (floor)", "rate": rate, "seconds": seconds, **figures}


def _cards_per_tag(fake: FakeSlack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in fake.channel_posts():
        for word in str(call.args.get("text", "")).split():
            if word.startswith("bench-"):
                counts[word] = counts.get(word, 0) + 1
    return counts


# --- The floor: 250, then one chat.postMessage, nothing else ---------------------------------------------------

class FloorHandler:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.session: Any = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.original_content.decode("utf-8", "replace")
        subject = next((line for line in text.splitlines() if line.startswith("Subject:")), "")
        task = asyncio.get_running_loop().create_task(self._post(subject))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "250 OK"

    async def _post(self, subject: str) -> None:
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession()
        async with self.session.post(self.api_url + "chat.postMessage", json={"channel": CHANNEL, "text": subject},
                                     headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as response:
            await response.read()


def serve_floor(port: int, api_url: str) -> None:
    from aiosmtpd.smtp import SMTP

    async def main() -> None:
        handler = FloorHandler(api_url)
        server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


# --- Command line ----------------------------------------------------------------------------------------------

def run(rates: list[float], seconds: float, databases: list[str], procfile: bool = False) -> dict[str, object]:
    floors = {rate: run_floor(rate, seconds) for rate in rates}
    runs = [run_service(database, rate, seconds, procfile) for database in databases for rate in rates]
    for result in runs:
        floor_p95 = floors[result["rate"]]["card_s"]["p95"]  # type: ignore[index]
        p95 = result["card_s"]["p95"]  # type: ignore[index]
        result["p95_vs_floor"] = round(p95 / floor_p95, 1) if p95 and floor_p95 else None
    return {"machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average": round(os.getloadavg()[0], 1), "connections": CONNECTIONS, "target_p95_s": TARGET_P95,
            "processes": "one per part (Procfile)" if procfile else "one",
            "floors": list(floors.values()), "runs": runs}


def ms(value: object) -> str:
    return f"{float(value) * 1000:.0f} ms" if value is not None else "-"  # type: ignore[arg-type]


def print_table(figures: dict[str, Any]) -> None:
    print(f"{figures['machine']}, load average {figures['load_average']}, {figures['connections']} connections, "
          f"service processes: {figures['processes']}")
    print("database      rate  sent  cards  card p50 / p95 / p99 / max            ack p95   intake p95  x floor"
          "  CPU/msg")
    for r in [*figures["floors"], *figures["runs"]]:
        card = r["card_s"]
        ack = ms(r["ack_s"]["p95"]) if "ack_s" in r else "-"
        print(f"{r['database']:<13} {r['rate']:>4g} {r['accepted']:>5} {r['cards']:>6}  "
              f"{ms(card['p50'])} / {ms(card['p95'])} / {ms(card['p99'])} / {ms(card['max'])}   "
              f"{ack:>8}  {ms(r['intake_s']['p95']):>9}  {r.get('p95_vs_floor') or '-':>7}"
              f"  {r.get('cpu_ms_per_message', '-')} ms{by_process(r)}")
    met = all(r["card_s"]["p95"] is not None and r["card_s"]["p95"] < TARGET_P95 for r in figures["runs"])
    print(f"target card p95 < {TARGET_P95 * 1000:.0f} ms: {'met' if met else 'MISSED'}")


def by_process(result: dict[str, Any]) -> str:
    """The CPU per message of each part, when they ran as separate processes."""
    used = result.get("cpu_ms_per_message_by_process") or []
    if len(used) < 2:
        return ""
    return " (" + ", ".join(f"{part} {ms}" for part, ms in zip(PARTS, used)) + ")"


def complete(figures: dict[str, Any]) -> bool:
    """Every accepted message got exactly one card (and, through the service, its acknowledgement)."""
    return all(r["cards"] == r["accepted"] == r["offered"] and r.get("acks", r["accepted"]) == r["accepted"]
               and not r.get("duplicate_cards") for r in [*figures["floors"], *figures["runs"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s per rate instead of 30")
    parser.add_argument("--seconds", type=float, help="how long each rate is offered")
    parser.add_argument("--rates", type=float, nargs="+", default=[10.0, 50.0], help="messages a second")
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"])
    parser.add_argument("--procfile", action="store_true",
                        help="run intake, outbox and Slack as separate processes, as the Procfile does")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--floor-server", nargs=2, metavar=("PORT", "API_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        serve_floor(int(args.floor_server[0]), args.floor_server[1])
        return 0
    databases = args.databases or (["sqlite", "postgresql"] if postgres_reachable() else ["sqlite"])
    figures = run(args.rates, args.seconds or (3.0 if args.quick else 30.0), databases, args.procfile)
    if args.json:
        print(json.dumps(figures))
    else:
        print_table(figures)
    return 0 if complete(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
