"""How long reading one message takes, registry matching included, with 5,000 hosts and 100,000 events.

Usage: python -m benchmarks.reading_speed [--quick] [--database-url URL]

The registry is the test corpus's 26 hosts plus generated ones, so the corpus emails still match their
hosts while every lookup runs against the full-size tables. Every corpus email that refers to that shared
registry (437; --quick: the 75 of tests/corpus) is read several times round-robin, each copy with a new
Message-ID and new MIME boundaries (the registry index is warm, as in the running service), and the
per-message time is reported as a median and 95th percentile, for all readings and for the first reading
of each email, next to a baseline in the same run: the stdlib email parser alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import random
import re
import statistics
import sys
import tempfile
import time
from decimal import Decimal

import sqlalchemy as sa

from storage.db import make_engine, make_sessionmaker, upgrade
from storage.registry import Event, Host, User
from tests.corpora import CORPORA, REGISTRY, load_registry, registry_of
from workflows.inbox import inspect
from workflows.matching import forget_registry_index
from workflows.policy import MailboxPolicy

WORDS = ("reading writing math science history art music coding robotics literacy leadership coaching "
         "assessment inclusion wellness culture language data inquiry design outdoor digital rural").split()
PLACES = "Billings Missoula Helena Bozeman Butte Kalispell Havre Dillon Glasgow Miles Lewistown Polson".split()


def generate_registry(sessions, hosts: int, events_per_host: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    today = dt.date(2026, 11, 1)
    with sessions() as session:
        for start in range(0, hosts, 500):
            host_rows, user_rows, event_rows = [], [], []
            for n in range(start, min(start + 500, hosts)):
                host_id = f"G{n:05d}"
                name = f"{rng.choice(PLACES)} {rng.choice(WORDS).title()} {rng.choice(['Cooperative', 'Institute', 'Academy', 'District', 'Network'])} {n}"
                host_rows.append(dict(host_id=host_id, name=name, kind="multiple", phone="(406) 555-0100",
                                      address="", contact_name="Pat Example", contact_email=f"contact{n}@host{n}.org",
                                      contact_phone="", status="active", updated_at=dt.datetime.now(dt.timezone.utc)))
                user_rows.append(dict(username=f"U{n:05d}", full_name="User Example", email=f"user{n}@host{n}.org",
                                      phone="", host_id=host_id, status="active", updated_at=dt.datetime.now(dt.timezone.utc)))
                for e in range(events_per_host):
                    begin = today - dt.timedelta(days=rng.randint(-120, 400))
                    event_rows.append(dict(
                        event_id=f"X{n:05d}{e:02d}", host_id=host_id,
                        title=f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {rng.choice(['Workshop', 'Institute', 'Night', 'Training'])}",
                        instructor="Alex Example", description="", categories=["Literacy"], start_date=begin,
                        end_date=begin, online=False, city=rng.choice(PLACES), zip="59101", state="MT",
                        hours=Decimal("3"), certificates_issued=None, status="scheduled",
                        updated_at=dt.datetime.now(dt.timezone.utc)))
            session.execute(sa.insert(Host), host_rows)
            session.execute(sa.insert(User), user_rows)
            session.execute(sa.insert(Event), event_rows)
            session.commit()


BOUNDARY = re.compile(rb'boundary="?([^";\s]+)', re.IGNORECASE)


def unique_copies(raw: bytes, rounds: int) -> list[bytes]:
    """The same email with a new Message-ID and new MIME boundaries each time, as real mail has.

    A new boundary matters: the standard library's parser compiles a pattern for every boundary it meets,
    and every new pattern pushes an older one out of the ``re`` module's cache.
    """
    boundaries = set(BOUNDARY.findall(raw))
    copies = []
    for n in range(rounds):
        tag = f"{n}{random.random()}"
        stamp = f"<bench-{tag}@example.org>".encode()
        lines = raw.split(b"\n")
        lines = [stamp.join([b"Message-ID: ", b""]) if l.lower().startswith(b"message-id:") else l for l in lines]
        copy = b"\n".join(lines)
        for boundary in boundaries:
            copy = copy.replace(boundary, boundary + tag[-8:].encode())
        copies.append(copy)
    return copies


def measure(fn, raws: list[bytes]) -> list[float]:
    times = []
    for raw in raws:
        started = time.perf_counter()
        fn(raw)
        times.append(time.perf_counter() - started)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 hosts and 10,000 events, fewer rounds")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    hosts, per_host, rounds = (500, 20, 2) if args.quick else (5000, 20, 5)
    folder = tempfile.mkdtemp(prefix="pdubot-bench-")
    url = args.database_url or f"sqlite:///{folder}/bench.db"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    load_registry(sessions)
    started = time.perf_counter()
    generate_registry(sessions, hosts, per_host)
    print(f"registry: {hosts + 26} hosts, {hosts * per_host + 158} events ({time.perf_counter() - started:.1f} s to build)")
    # Every corpus (437 emails); --quick keeps to the first. All share the corpus registry loaded above.
    # Corpora with a registry of their own are left out: their emails would be read against the wrong one.
    folders = ["corpus"] if args.quick else sorted(
        p.name for p in CORPORA.glob("corpus*") if (p / "emails").is_dir() and registry_of(p) == REGISTRY
    )
    raws = [p.read_bytes() for folder in folders for p in sorted((CORPORA / folder / "emails").glob("*.eml"))]
    # Round-robin, so a cache keyed on an email's text sees each text again only after all the others, and
    # the first round alone is what mail never seen before costs.
    copies = [copy for n in range(rounds) for copy in (unique_copies(raw, 1)[0] for raw in raws)]
    policy = MailboxPolicy()
    forget_registry_index()
    with sessions() as session:
        inspect(session, raws[0], policy)  # builds the registry index once, as the service does at start
        ours = measure(lambda r: inspect(session, r, policy), copies)
    floor = measure(lambda r: email.message_from_bytes(r, policy=email.policy.default).get_body(("plain", "html")),
                    copies)
    first = ours[:len(raws)]
    print(f"messages read: {len(ours)} ({len(raws)} corpus emails x {rounds}, round-robin)")
    print(f"pdubot parse + read + match: median {statistics.median(ours) * 1000:.2f} ms, p95 {percentile(ours, 0.95) * 1000:.2f} ms")
    print(f"  first reading of each email: median {statistics.median(first) * 1000:.2f} ms, "
          f"p95 {percentile(first, 0.95) * 1000:.2f} ms")
    print(f"baseline, stdlib parse only:  median {statistics.median(floor) * 1000:.2f} ms, p95 {percentile(floor, 0.95) * 1000:.2f} ms")
    print(f"ratio (median): {statistics.median(ours) / statistics.median(floor):.1f}x the stdlib parse")
    target_met = percentile(ours, 0.95) < 0.005
    print(f"target p95 < 5 ms: {'met' if target_met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
