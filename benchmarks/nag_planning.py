"""Nag planning benchmark: plan a day's certificate-count reminders with 5,000 hosts and 1,000,000 events.

The registry is bulk-loaded into a scratch PostgreSQL database with COPY. End dates spread over ten years
and six months ahead; how often a count is still missing falls with age, as it does when hosts are nagged
(half of the events ended in the last 30 days, a fifth up to 90 days, 5 % up to a year, 0.5 % older);
2 % of events are cancelled and 5 % of hosts inactive. ``reminders_sent`` holds every stage an overdue
event already heard on earlier days, so today's run finds only the events that reach a stage today.

Timed, in the same run:
- ``workflows.reminders.plan_reminders``: what today's run owes each host (it only reads; target < 2 s);
- ``workflows.reminders.send_reminders`` with ``dry_run=True``: the whole run, planned again host by host
  inside each host's transaction, writing nothing;
- and EXPLAIN (ANALYZE, BUFFERS) of the overdue query, to show it uses the partial index ix_events_overdue.

    python benchmarks/nag_planning.py            # 5,000 hosts, 1,000,000 events
    python benchmarks/nag_planning.py --quick    # 5,000 hosts, 50,000 events
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from benchmarks.intake import PG_ADMIN_URL, postgres_reachable, scratch_database  # noqa: E402
from storage.db import make_engine, make_sessionmaker  # noqa: E402
from storage.reminders import stages_given  # noqa: E402
from storage.registry import Event, Host  # noqa: E402
from workflows.policy import MailboxPolicy  # noqa: E402
from workflows.reminders import (  # noqa: E402
    NagPolicy,
    ending_courses,
    overdue_events,
    overdue_filter,
    plan_reminders,
    send_reminders,
    stage_keys_due,
)

TODAY = dt.date(2026, 11, 23)
WORDS = ("reading writing math science history art music coding robotics literacy leadership coaching "
         "assessment inclusion wellness culture language data inquiry design outdoor digital rural").split()
PLACES = "Billings Missoula Helena Bozeman Butte Kalispell Havre Dillon Glasgow Miles Lewistown Polson".split()
NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)


def missing_count_chance(age_days: int) -> float:
    """How likely an event that ended ``age_days`` ago still has no certificate count."""
    if age_days <= 30:
        return 0.5
    if age_days <= 90:
        return 0.2
    if age_days <= 365:
        return 0.05
    return 0.005


def stages_heard(age_days: int, policy: NagPolicy) -> list[int]:
    """Every stage an overdue event reached on an earlier day (today's stage, if any, is still owed)."""
    series = list(policy.stages)
    while series[-1] + policy.repeat_days < age_days:
        series.append(series[-1] + policy.repeat_days)
    return [s for s in series if s < age_days]


def host_rows(hosts: int, rng: random.Random) -> Iterator[tuple[object, ...]]:
    for n in range(hosts):
        status = "active" if rng.random() < 0.95 else "inactive"
        name = f"{rng.choice(PLACES)} {rng.choice(WORDS).title()} Institute {n}"
        yield (f"H{n:05d}", name, "multiple", "(406) 555-0100", "", "Pat Example", f"contact{n}@host{n}.org",
               "", status, NOW)


def user_rows(hosts: int) -> Iterator[tuple[object, ...]]:
    for n in range(hosts):
        for u in range(2):
            yield (f"U{n:05d}{u}", "User Example", f"user{u}.{n}@host{n}.org", "", f"H{n:05d}", "active", NOW)


def event_rows(hosts: int, events: int, rng: random.Random, policy: NagPolicy,
               reminders: list[tuple[object, ...]]) -> Iterator[tuple[object, ...]]:
    """``events`` events spread over the hosts; fills ``reminders`` with the stages already heard."""
    per_host = events // hosts
    for n in range(hosts):
        host_id = f"H{n:05d}"
        for e in range(per_host):
            event_id = f"X{n:05d}{e:04d}"
            age = rng.randint(-180, 3650)
            end = TODAY - dt.timedelta(days=age)
            year_long = rng.random() < 0.01
            start = end - dt.timedelta(days=365 if year_long else rng.choice((0, 0, 0, 1, 2)))
            cancelled = rng.random() < 0.02
            missing = age < 0 or rng.random() < missing_count_chance(age)
            count = None if missing else rng.randint(1, 60)
            if missing and age > 0 and not cancelled:
                reminders.extend((event_id, host_id, "overdue", s, TODAY - dt.timedelta(days=age - s), NOW)
                                 for s in stages_heard(age, policy))
                if age > policy.staff_days:
                    reminders.append((event_id, host_id, "staff", policy.staff_days,
                                      TODAY - dt.timedelta(days=age - policy.staff_days), NOW))
            yield (event_id, host_id, f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} Workshop",
                   "Alex Example", "", '["Literacy"]', start, end, False, rng.choice(PLACES), "59101", "MT",
                   Decimal("3.00"), count, "cancelled" if cancelled else "scheduled", NOW)


def copy_rows(engine: sa.Engine, table: str, columns: str, rows: Iterator[tuple[object, ...]]) -> int:
    """COPY ``rows`` into ``table`` through psycopg, the fastest way PostgreSQL takes bulk data."""
    raw = engine.raw_connection()
    count = 0
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        raw.commit()
    finally:
        raw.close()
    return count


def load_registry(engine: sa.Engine, hosts: int, events: int, seed: int = 5) -> dict[str, int]:
    rng = random.Random(seed)
    policy = NagPolicy()
    reminders: list[tuple[object, ...]] = []
    counts = {
        "hosts": copy_rows(engine, "hosts", "host_id, name, kind, phone, address, contact_name, contact_email, "
                           "contact_phone, status, updated_at", host_rows(hosts, rng)),
        "users": copy_rows(engine, "users", "username, full_name, email, phone, host_id, status, updated_at",
                           user_rows(hosts)),
        "events": copy_rows(engine, "events", "event_id, host_id, title, instructor, description, categories, "
                            "start_date, end_date, online, city, zip, state, hours, certificates_issued, status, "
                            "updated_at", event_rows(hosts, events, rng, policy, reminders)),
    }
    counts["reminders_sent"] = copy_rows(engine, "reminders_sent", "event_id, host_id, kind, stage, run_date, "
                                         "created_at", iter(reminders))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
    return counts


def time_planning(sessions: sessionmaker[Session], rounds: int) -> tuple[list[float], int, int]:
    """Seconds per ``plan_reminders`` call, each in a new session; and hosts owed something, events overdue."""
    times, plans = [], []
    for _ in range(rounds):
        with sessions() as session:
            started = time.perf_counter()
            plans = plan_reminders(session, TODAY, NagPolicy())
            times.append(time.perf_counter() - started)
    return times, sum(1 for p in plans if p.needs_digest), sum(len(p.overdue) for p in plans)


def time_parts(sessions: sessionmaker[Session]) -> dict[str, float]:
    """The three reads ``plan_reminders`` makes, timed one by one in a new session, to show which dominates."""
    parts: dict[str, float] = {}
    with sessions() as session:
        started = time.perf_counter()
        overdue = overdue_events(session, TODAY)
        parts["overdue_events"] = time.perf_counter() - started
        started = time.perf_counter()
        ending = ending_courses(session, TODAY, NagPolicy())
        parts["ending_courses"] = time.perf_counter() - started
        started = time.perf_counter()
        policy = NagPolicy()
        due = {e.event_id: policy.stage_for((TODAY - e.end_date).days) for e in overdue}
        keys = stage_keys_due(overdue, ending, due, policy, TODAY)
        given = stages_given(session, keys)
        parts["stages_given"] = time.perf_counter() - started
    parts["stage_keys_asked"] = len(keys)
    parts["stage_rows_read"] = len(given)
    return parts


def time_floor(engine: sa.Engine) -> float:
    """The least any planner must do: fetch the overdue events' rows through the driver, no ORM, no stages."""
    with engine.connect() as connection:
        started = time.perf_counter()
        connection.execute(sa.select(Event.__table__).join(Host.__table__, Host.host_id == Event.host_id)
                           .where(overdue_filter(TODAY), Host.status == "active")).fetchall()
        return time.perf_counter() - started


def explain_overdue_query(engine: sa.Engine, sessions: sessionmaker[Session]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the very statement ``overdue_events`` sends, captured as it runs."""
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with sessions() as session:
            overdue_events(session, TODAY)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
        return "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50,000 events, for the test suite")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    args = parser.parse_args()
    hosts, events = 5_000, (50_000 if args.quick else 1_000_000)
    if not postgres_reachable():
        print(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; this benchmark needs it")
        return 2
    with tempfile.TemporaryDirectory() as tmp, scratch_database("postgresql", Path(tmp)) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        started = time.perf_counter()
        counts = load_registry(engine, hosts, events)
        loaded = time.perf_counter() - started
        print(f"loaded with COPY in {loaded:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
        times, owed, overdue = time_planning(sessions, rounds=5)
        print(f"plan_reminders for {TODAY}: {overdue:,} overdue events, {owed:,} hosts owed a digest")
        print(f"  first run {times[0]:.3f} s; median of the next {len(times) - 1}: {statistics.median(times[1:]):.3f} s"
              f" (target < 2 s: {'met' if max(times) < 2 else 'NOT met'})")
        parts = time_parts(sessions)
        print("  its reads, one by one: " + ", ".join(
            f"{k} {v:.3f} s" for k, v in parts.items() if not k.startswith("stage_"))
            + f" ({parts['stage_rows_read']:,} stage rows read for {parts['stage_keys_asked']:,} keys asked)")
        floor = statistics.median(time_floor(engine) for _ in range(5))
        print(f"  floor, the overdue rows fetched raw: {floor:.3f} s; planning / floor "
              f"{statistics.median(times[1:]) / floor:.1f}x")
        started = time.perf_counter()
        run = send_reminders(sessions, MailboxPolicy(), NagPolicy(), TODAY, dry_run=True)
        dry = time.perf_counter() - started
        print(f"send_reminders(dry_run=True): {dry:.2f} s for {len(run.digests):,} digests and "
              f"{len(run.staff_summaries):,} staff summaries")
        plan = explain_overdue_query(engine, sessions)
        print("EXPLAIN (ANALYZE, BUFFERS) of the overdue query:\n" + plan)
        print(f"uses ix_events_overdue: {'yes' if 'ix_events_overdue' in plan else 'NO'}")
        engine.dispose()
    if args.json:
        print(json.dumps({"events": counts["events"], "hosts": counts["hosts"], "load_s": round(loaded, 2),
                          "plan_first_s": round(times[0], 3), "plan_median_s": round(statistics.median(times[1:]), 3),
                          "overdue": overdue, "hosts_owed": owed, "dry_run_s": round(dry, 2),
                          "digests": len(run.digests), "uses_index": "ix_events_overdue" in plan,
                          "floor_s": round(floor, 3),
                          "parts_s": {k: round(v, 3) for k, v in parts.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
