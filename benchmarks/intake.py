"""Intake benchmark: ``pdubot ingest`` on thousands of realistic emails, against a floor timed in the same run.

Emails are made from the repository's corpora (tests/corpus*/emails): each copy gets its own Message-ID, a
sender varied within the original's domain (so host matching still has something to find), and a body with
another greeting and other small numbers. They are written to a folder and taken in exactly as the command
line does it: ``bot.ingest.find_messages``, then ``workflows.inbox.receive`` for each, acknowledgements off.

The floor is what any intake must do at least: read the file, parse it with the stdlib
(``email.message_from_bytes`` with ``policy.default``) and insert the bytes into a table, one commit per
message as ingest does, through the same database driver.

It also reports the cost per message with 1,000 and with 100,000 tickets already stored (bulk-loaded with
their messages, audit entries and Slack cards), to show it stays flat, and profiles ingest on the slower
database with cProfile.

    python benchmarks/intake.py            # 2,000 and 20,000 emails; 1,000 per flatness level
    python benchmarks/intake.py --quick    # 100 emails; 50 per flatness level with 1,000 and 5,000 tickets
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

from bot.ingest import find_messages, take_in  # noqa: E402
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


def floor(engine: sa.Engine, folder: Path) -> int:
    """The least any intake does: read, parse with the stdlib, insert the bytes, commit; per message."""
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
            connection.commit()
            count += 1
        return count
    finally:
        connection.close()


def timed(work) -> tuple[int, float]:  # noqa: ANN001
    started = time.perf_counter()
    count = work()
    return count, time.perf_counter() - started


@dataclass
class Comparison:
    database: str
    emails: int
    ours_seconds: float
    floor_seconds: float

    @property
    def ratio(self) -> float:
        return self.ours_seconds / self.floor_seconds

    def as_json(self) -> dict[str, object]:
        return {"database": self.database, "emails": self.emails, "ours_s": round(self.ours_seconds, 2),
                "floor_s": round(self.floor_seconds, 2),
                "ours_ms_per_email": round(self.ours_seconds / self.emails * 1000, 2),
                "floor_ms_per_email": round(self.floor_seconds / self.emails * 1000, 2),
                "ratio": round(self.ratio, 1)}


def compare(kind: str, workdir: Path, emails: Path, count: int) -> Comparison:
    """Ingest ``emails`` into a fresh database of ``kind``, then run the floor on the same database."""
    with scratch_database(kind, workdir) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        load_corpus_registry(sessions)
        ingested, ours = timed(lambda: ingest(sessions, emails))
        floored, base = timed(lambda: floor(engine, emails))
        engine.dispose()
    assert ingested == floored == count, (ingested, floored, count)
    return Comparison(kind, count, ours, base)


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
    """Seconds per message to ingest ``emails`` into a database that already holds ``existing`` tickets."""
    with scratch_database(kind, workdir) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        load_corpus_registry(sessions)
        prefill(engine, existing)
        if kind == "postgresql":
            with engine.begin() as connection:
                connection.execute(sa.text("ANALYZE"))
        count, seconds = timed(lambda: ingest(sessions, emails))
        engine.dispose()
    return seconds / count


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
        profiler.runcall(ingest, sessions, emails)
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
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    args = parser.parse_args()
    sizes = (100,) if args.quick else (2_000, 20_000)
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
        print(f"{len(CORPUS_EMAILS)} corpus emails as templates")
        for size in sizes:
            emails = write_emails(workdir / f"emails-{size}", size)
            for kind in kinds:
                forget_registry_index()
                result = compare(kind, workdir, emails, size)
                comparisons.append(result)
                print(f"{kind:<10} {size:>6} emails: ingest {result.ours_seconds:7.1f} s "
                      f"({result.ours_seconds / size * 1000:5.1f} ms/email), floor {result.floor_seconds:6.1f} s "
                      f"({result.floor_seconds / size * 1000:4.1f} ms/email), ratio {result.ratio:4.1f}x")
        sample = write_emails(workdir / "flat", flat_sample, seed=23)
        for kind in kinds:
            costs = {}
            for existing in levels:
                forget_registry_index()
                costs[existing] = cost_with_existing(kind, workdir, sample, existing)
            low, high = costs[levels[0]], costs[levels[1]]
            flatness.append({"database": kind, "ms_per_email": {k: round(v * 1000, 2) for k, v in costs.items()},
                             "change": round(high / low, 2)})
            print(f"{kind:<10} per email with {levels[0]:,} tickets: {low * 1000:.1f} ms; with {levels[1]:,}: "
                  f"{high * 1000:.1f} ms ({high / low:.2f}x)")
        slowest = max(comparisons, key=lambda c: c.ours_seconds / c.emails).database
        forget_registry_index()
        print(f"\ncProfile of ingest on {slowest} ({flat_sample} emails):")
        print(profile(slowest, workdir, sample))
    results = {"corpus_emails": len(CORPUS_EMAILS), "comparisons": [c.as_json() for c in comparisons],
               "flatness": flatness}
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
