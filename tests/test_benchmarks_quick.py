"""The intake, nag planning, certificate, memory, latency and reading benchmarks still run, in quick mode, so
they cannot rot.

They run side by side (each is its own process), so their figures here mean nothing; BENCHMARKS.md has the
real ones. The mail-out benchmark has its own test (tests/test_benchmark.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import PG_ADMIN_URL, _postgres_reachable, require

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
QUICK = ("intake", "nag_planning", "certificates", "memory")


def start(name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def figures_of(name: str, process: subprocess.Popen[str], deadline: float) -> dict[str, object]:
    stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 1))
    assert process.returncode == 0, f"{name}: {stderr[-3000:]}"
    return json.loads(stdout.strip().splitlines()[-1])


def test_it_runs_every_benchmark_in_quick_mode():
    require(_postgres_reachable(), f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    deadline = time.monotonic() + 240
    processes = {name: start(name) for name in QUICK}
    try:
        figures = {name: figures_of(name, process, deadline) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()

    intake = figures["intake"]
    assert {c["database"] for c in intake["comparisons"]} == {"sqlite", "postgresql"}
    assert all(c["emails"] == 100 and c["ratio"] > 0 for c in intake["comparisons"])
    assert len(intake["flatness"]) == 2
    nags = figures["nag_planning"]
    assert nags["events"] == 50_000 and nags["overdue"] > 0 and nags["uses_index"]
    certificates = figures["certificates"]
    assert certificates["batch"] == 10 and certificates["median_ms"] > 0
    memory = figures["memory"]
    assert memory["sqlite"]["peak_mb"] > memory["sqlite"]["baseline_mb"]
    assert memory["idle_service"]["rss_mb"] > 0


def test_it_runs_the_end_to_end_latency_benchmark_in_quick_mode():
    require(_postgres_reachable(), f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    # One rate keeps this under half a minute; the full run (BENCHMARKS.md) covers 10 and 50 a second.
    result = subprocess.run([sys.executable, str(BENCHMARKS / "latency.py"), "--quick", "--rates", "10", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    runs = figures["runs"]
    assert {(r["database"], r["rate"]) for r in runs} == {("sqlite", 10.0), ("postgresql", 10.0)}
    for r in runs:  # every message offered was accepted and got exactly one card and one acknowledgement
        assert r["offered"] == r["accepted"] == r["cards"] == r["acks"] > 0 and r["duplicate_cards"] == 0, r
        assert 0 < r["card_s"]["p50"] <= r["card_s"]["p95"] <= r["card_s"]["p99"] < 30, r
    assert all(f["cards"] == f["offered"] for f in figures["floors"])
    assert all(r["p95_vs_floor"] > 1 for r in runs)
    assert result.returncode == 0, result.stderr[-3000:]


def test_it_runs_the_reading_speed_benchmark_in_quick_mode():
    done = subprocess.run([sys.executable, "-m", "benchmarks.reading_speed", "--quick"], cwd=BENCHMARKS.parent,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pdubot parse + read + match: median" in done.stdout
    assert "baseline, stdlib parse only:" in done.stdout and "x the stdlib parse" in done.stdout
