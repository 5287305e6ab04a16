"""Intake benchmark: ``pdubot ingest`` on thousands of realistic emails, against a floor timed in the same run.

Emails are made from the repository's corpora (tests/corpus*/emails): each copy gets its own Message-ID, a
sender varied within the original's domain (so host matching still has something to find), and a body with
another greeting and other small numbers. They are written to a folder and taken in exactly as the command
line does it: ``bot.ingest.find_messages``, then ``bot.ingest.take_in`` (batches of 100 per transaction),
acknowledgements off; once in one process, and once with reader processes (one per core by default, as
``pdubot ingest`` uses for a large backfill) parsing and reading while the main process writes.

The floor is what any intake must do at least, in one process: read the file, parse it with the stdlib
(``email.message_from_bytes`` with ``policy.default``) and insert the bytes into a table through the same
database driver, with one commit per message (what SMTP intake must do, and the floor the ratio is against).
The batched floor commits every 100 messages, as ingest now does.

It also reports the cost per message (one process) with 1,000 and with 100,000 tickets already stored
(bulk-loaded with their messages, audit entries and Slack cards), to show it stays flat, and profiles
ingest in one process on the slower database with cProfile.

    python benchmarks/intake.py            # 2,000 and 20,000 emails; 1,000 per flatness level
    python benchmarks/intake.py --quick    # 100 emails, 1 reader; 50 per flatness level with 1,000 and 5,000 tickets
    python benchmarks/intake.py --sizes 2000 --no-flatness --no-profile   # one comparison only
"""

from __future__ import annotations

import argparse
import cProfile
import email
import email.policy
import email.utils
import io
import json
import os
import pstats
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LOG_LEVEL", "WARNING")

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from bot.ingest import BATCH_SIZE, find_messages, take_in  # noqa: E402
from storage.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from storage.enums import (  # noqa: E402
    Channel,
    Direction,
    MessageClass,
    OutboxStatus,
    Source,
    TicketKind,
    TicketStatus,
)
from storage.outbox import OutboxItem  # noqa: E402
from storage.tickets import AuditEntry, Message, Ticket  # noqa: E402
from workflows.matching import forget_registry_index  # noqa: E402
from workflows.policy import MailboxPolicy  # noqa: E402

PG_ADMIN_URL = os.environ.get("PDUBOT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CORPUS_EMAILS = sorted(ROOT.glob("tests/corpus*/emails/*.eml"))
GREETINGS = ("Hi,", "Hello,", "Good morning,", "Good afternoon,", "Hello PDU team,", "Hi there,", "Dear OPI,")
FIRST_NAMES = ("ann", "bob", "carla", "dan", "erin", "frank", "gail", "hank", "ivy", "joe", "kim", "lee")
SMALL_NUMBER = re.compile(r"(?<![\w.:/-])\d{1,3}(?![\w.:/-])")


# --- Databases -------------------------------------------------------------------------------------------------

def postgres_reachable(admin_url: str = PG_ADMIN_URL) -> bool:
    try:
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@contextmanager
def scratch_database(kind: str, folder: Path, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new, migrated database of ``kind`` ("sqlite" or "postgresql"), dropped at the end."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        migrate(url)
        yield url
        return
    name = f"pdubot_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def load_corpus_registry(sessions: sessionmaker[Session]) -> None:
    """The corpus registry (tests/corpus/registry), so the emails find their hosts and events."""
    from tests.corpora import load_registry

    load_registry(sessions)


# --- Realistic emails ------------------------------------------------------------------------------------------

def vary(original: bytes, n: int, rng: random.Random) -> bytes:
    """A new email like ``original``: its own Message-ID, a varied sender and a varied plain-text body."""
    message = email.message_from_bytes(original, policy=email.policy.default)
    name, address = email.utils.parseaddr(str(message.get("From", "")))
    domain = address.rpartition("@")[2] or "example.org"
    if rng.random() < 0.5:  # half come from someone else at the same organisation
        person = rng.choice(FIRST_NAMES)
        name, address = f"{person.title()} {rng.choice(FIRST_NAMES).title()}son", f"{person}{n}@{domain}"
    replace_header(message, "From", email.utils.formataddr((name, address)))
    replace_header(message, "Message-ID", f"<bench-{n}-{uuid.uuid4().hex[:12]}@{domain}>")
    vary_body(message, rng)
    return message.as_bytes(policy=email.policy.SMTP)


def replace_header(message: EmailMessage, name: str, value: str) -> None:
    del message[name]
    message[name] = value


def vary_body(message: EmailMessage, rng: random.Random) -> None:
    """Another greeting, and about half of the small numbers changed; HTML-only mail keeps its body."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        return  # an unknown charset: keep the body as it is
    text = SMALL_NUMBER.sub(lambda m: str(rng.randint(1, 10 ** len(m.group()) - 1)) if rng.random() < 0.5
                            else m.group(), text)
    part.set_content(f"{rng.choice(GREETINGS)}\n\n{text}", charset="utf-8")


def write_emails(folder: Path, count: int, seed: int = 11) -> Path:
    """``count`` varied copies of the corpus emails as .eml files in ``folder``, which is returned."""
    rng = random.Random(seed)
    originals = [p.read_bytes() for p in CORPUS_EMAILS]
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"{n:06d}.eml").write_bytes(vary(originals[n % len(originals)], n, rng))
    return folder


# --- What is timed ---------------------------------------------------------------------------------------------

def ingest(sessions: sessionmaker[Session], folder: Path, readers: int = 0) -> int:
    """What ``pdubot ingest --readers N FOLDER`` does, without the progress bar."""
    found = find_messages([folder])
    receipts = list(take_in(sessions, found, MailboxPolicy(), acknowledge=False, readers=readers))
    assert len(receipts) == len(found)
    return len(found)


def floor(engine: sa.Engine, folder: Path, per_commit: int = 1) -> int:
    """The least any intake does: read, parse with the stdlib, insert the bytes; a commit every ``per_commit``
    messages (1, as SMTP intake must; or ingest's batch size, the floor of a batched backfill)."""
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS floor_raw (id INTEGER PRIMARY KEY, raw BYTEA)"
                                   if engine.dialect.name == "sqlite" else
                                   "CREATE TABLE IF NOT EXISTS floor_raw (id SERIAL PRIMARY KEY, raw BYTEA)"))
    insert = "INSERT INTO floor_raw (raw) VALUES (?)" if engine.dialect.name == "sqlite" else \
        "INSERT INTO floor_raw (raw) VALUES (%s)"
    connection = engine.raw_connection()
    try:
        count = 0
        for path in sorted(folder.glob("*.eml")):
            raw = path.read_bytes()
            email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain", "html"))
            cursor = connection.cursor()
            cursor.execute(insert, (raw,))
            cursor.close()
            count += 1
            if count % per_commit == 0:
                connection.commit()
        connection.commit()
        return count
    finally:
        connection.close()


def timed(work) -> tuple[int, float]:  # noqa: ANN001
    started = time.perf_counter()
    count = work()
    return count, time.perf_counter() - started


@dataclass
class Comparison:
    """One size on one database: ingest in one process and with reader processes, against both floors."""

    database: str
    emails: int
    readers: int
    single_seconds: float  # ingest, one process
    parallel_seconds: float  # ingest, ``readers`` reader processes plus the writing process
    floor_seconds: float  # one commit per message
    batched_floor_seconds: float  # one commit per ingest batch

    @property
    def ratio(self) -> float:
        """The headline: ingest as the command runs it by default, against the floor the issue defines."""
        return self.parallel_seconds / self.floor_seconds

    def as_json(self) -> dict[str, object]:
        per_email = {name: round(seconds / self.emails * 1000, 2) for name, seconds in (
            ("single", self.single_seconds), ("parallel", self.parallel_seconds), ("floor", self.floor_seconds),
            ("batched_floor", self.batched_floor_seconds))}
        return {"database": self.database, "emails": self.emails, "readers": self.readers,
                "ms_per_email": per_email, "ratio": round(self.ratio, 2),
                "single_ratio": round(self.single_seconds / self.floor_seconds, 2),
                "parallel_vs_batched_floor": round(self.parallel_seconds / self.batched_floor_seconds, 2),
                "single_vs_batched_floor": round(self.single_seconds / self.batched_floor_seconds, 2)}

    def line(self) -> str:
        ms = self.as_json()["ms_per_email"]
        return (f"{self.database:<10} {self.emails:>6} emails, ms/email: ingest {ms['single']:5.2f} (1 process), "  # type: ignore[index]
                f"{ms['parallel']:5.2f} ({self.readers} readers + writer); floor {ms['floor']:4.2f}, batched "  # type: ignore[index]
                f"floor {ms['batched_floor']:4.2f}; ratio {self.ratio:4.2f}x ({self.single_seconds / self.floor_seconds:4.2f}x "  # type: ignore[index]
                f"in 1 process; vs batched floor {self.parallel_seconds / self.batched_floor_seconds:4.2f}x / "
                f"{self.single_seconds / self.batched_floor_seconds:4.2f}x)")


def fresh_ingest(kind: str, workdir: Path, emails: Path, readers: int, before=None, then=None):  # noqa: ANN001, ANN201
    """Seconds to ingest ``emails`` into a fresh database of ``kind`` (corpus registry loaded, then
    ``before(engine)``), and what ``then(engine)`` returns, run on the same database afterwards."""
    forget_registry_index()
    with scratch_database(kind, workdir) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        load_corpus_registry(sessions)
        if before:
            before(engine)
        _, seconds = timed(lambda: ingest(sessions, emails, readers))
        after = then(engine) if then else None
        engine.dispose()
    return seconds, after


def compare(kind: str, workdir: Path, emails: Path, count: int, readers: int) -> Comparison:
    """Ingest ``emails`` in one process, then both floors on that database; then ingest with readers."""
    def floors(engine: sa.Engine) -> tuple[float, float]:
        return timed(lambda: floor(engine, emails))[1], timed(lambda: floor(engine, emails, BATCH_SIZE))[1]

    single, (base, batched_base) = fresh_ingest(kind, workdir, emails, 0, then=floors)
    parallel, _ = fresh_ingest(kind, workdir, emails, readers)
    return Comparison(kind, count, readers, single, parallel, base, batched_base)


# --- Flatness: cost per message with many tickets already stored -----------------------------------------------

def prefill(engine: sa.Engine, tickets: int, chunk: int = 10_000) -> None:
    """``tickets`` tickets, each with its inbound message, its audit entry and its (sent) Slack card, inserted in
    bulk, as years of mail would leave them."""
    for start in range(0, tickets, chunk):
        size = min(chunk, tickets - start)
        with engine.begin() as connection:
            first = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(Ticket.id), 0)))
            connection.execute(sa.insert(Ticket), [
                {"kind": TicketKind.OTHER, "status": TicketStatus.CLOSED, "requester": f"old{start + n}@example.org",
                 "subject": f"Old request {start + n}"} for n in range(size)])
            ids = connection.scalars(sa.select(Ticket.id).where(Ticket.id > first).order_by(Ticket.id)).all()
            connection.execute(sa.insert(Message), [
                {"ticket_id": ticket_id, "direction": Direction.IN, "classification": MessageClass.REQUEST,
                 "source": Source.FILE, "message_id": f"old-{start + n}@example.org",
                 "dedupe_key": f"old-{start + n}@example.org", "subject": f"Old request {start + n}",
                 "from_addr": f"old{start + n}@example.org", "new_text": "Please remove our cancelled workshop.",
                 "raw": b"", "raw_size": 0} for n, ticket_id in enumerate(ids)])
            connection.execute(sa.insert(AuditEntry), [
                {"ticket_id": ticket_id, "actor": "pdubot", "action": "created"} for ticket_id in ids])
            connection.execute(sa.insert(OutboxItem), [
                {"channel": Channel.SLACK, "status": OutboxStatus.SENT, "kind": "card", "ticket_id": ticket_id,
                 "dedupe_key": f"card:{ticket_id}"} for ticket_id in ids])


def cost_with_existing(kind: str, workdir: Path, emails: Path, existing: int) -> float:
    """Seconds per message to ingest ``emails``, in one process, into a database that already holds
    ``existing`` tickets."""
    def fill(engine: sa.Engine) -> None:
        prefill(engine, existing)
        if kind == "postgresql":
            with engine.begin() as connection:
                connection.execute(sa.text("ANALYZE"))

    seconds, _ = fresh_ingest(kind, workdir, emails, 0, before=fill)
    return seconds / len(find_messages([emails]))


# --- Profile ---------------------------------------------------------------------------------------------------

PACKAGES = ("sqlalchemy", "psycopg", "sqlite3", "email", "mailparser_reply", "rapidfuzz", "html2text",
            "workflows", "storage", "jinja2", "re", "json")


def profile(kind: str, workdir: Path, emails: Path) -> str:
    """cProfile of ingest on ``kind``: the top 15 cumulative entries, then own time by package."""
    with scratch_database(kind, workdir) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        load_corpus_registry(sessions)
        profiler = cProfile.Profile()
        profiler.runcall(ingest, sessions, emails, 0)
        engine.dispose()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(15)
    return out.getvalue() + own_time_by_package(stats)


def own_time_by_package(stats: pstats.Stats) -> str:
    """Where the time is actually spent (tottime), summed by the package each function lives in."""
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        totals[package_of(filename, function)] = totals.get(package_of(filename, function), 0.0) + tottime
    whole = sum(totals.values())
    lines = [f"  {name:<44} {seconds:7.2f} s  {seconds / whole:6.1%}"
             for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:12]]
    return "own time by package:\n" + "\n".join(lines) + "\n"


def package_of(filename: str, function: str) -> str:
    if filename == "~":
        return f"C {function[:40]}"  # a builtin, named: the driver's calls show up here
    path = Path(filename)
    for part in path.parts:
        if part in PACKAGES:
            return part if part not in ("workflows", "storage") else f"pdubot {part}.{path.stem}"
    return "other python"


# --- Main ------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--sizes", type=int, nargs="*",
                        help="how many emails to compare (default 2,000 and 20,000; none: flatness and profile only)")
    parser.add_argument("--readers", type=int, help="reader processes (default: one per core, as pdubot ingest)")
    parser.add_argument("--no-flatness", action="store_true", help="skip the runs with tickets already stored")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    args = parser.parse_args()
    sizes = args.sizes if args.sizes is not None else (100,) if args.quick else (2_000, 20_000)
    readers = args.readers or (1 if args.quick else os.cpu_count() or 1)
    levels = (1_000, 5_000) if args.quick else (1_000, 100_000)
    flat_sample = 50 if args.quick else 1_000
    kinds = ["sqlite"]
    if not args.sqlite_only:
        if postgres_reachable():
            kinds.append("postgresql")
        else:
            print(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: measuring SQLite only")
    comparisons: list[Comparison] = []
    flatness: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="pdubot-intake-") as tmp:
        workdir = Path(tmp)
        print(f"{len(CORPUS_EMAILS)} corpus emails as templates; {os.cpu_count()} cores", flush=True)
        for size in sizes:
            emails = write_emails(workdir / f"emails-{size}", size)
            for kind in kinds:
                comparisons.append(compare(kind, workdir, emails, size, readers))
                print(comparisons[-1].line(), flush=True)
        sample = write_emails(workdir / "flat", flat_sample, seed=23)
        for kind in [] if args.no_flatness else kinds:
            costs = {existing: cost_with_existing(kind, workdir, sample, existing) for existing in levels}
            low, high = costs[levels[0]], costs[levels[1]]
            flatness.append({"database": kind, "ms_per_email": {k: round(v * 1000, 2) for k, v in costs.items()},
                             "change": round(high / low, 2)})
            print(f"{kind:<10} per email with {levels[0]:,} tickets: {low * 1000:.2f} ms; with {levels[1]:,}: "
                  f"{high * 1000:.2f} ms ({high / low:.2f}x)", flush=True)
        if not args.no_profile:
            slowest = max(comparisons, key=lambda c: c.single_seconds / c.emails).database if comparisons else kinds[-1]
            forget_registry_index()
            print(f"\ncProfile of ingest in one process on {slowest} ({flat_sample} emails):")
            print(profile(slowest, workdir, sample))
    results = {"corpus_emails": len(CORPUS_EMAILS), "comparisons": [c.as_json() for c in comparisons],
               "flatness": flatness}
    if args.json:
        print(json.dumps(results))
    return 0

if __name__ == "__main__":
    sys.exit(main())
