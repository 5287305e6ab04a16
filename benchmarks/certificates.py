"""Certificate benchmark: how long the OPI certificate PDF takes (``workflows.certificates.render_certificate``).

Timed in one process: the first render (loading WeasyPrint, Pango and the fonts), then single renders of one
event (median and 95th percentile), then a batch of certificates for different events, as approving a batch
of event edits would make. The baseline in the same run is WeasyPrint printing a one-line HTML page.

    python benchmarks/certificates.py            # 50 single renders, a batch of 100
    python benchmarks/certificates.py --quick    # 5 single renders, a batch of 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.enums import EventStatus, HostKind  # noqa: E402
from storage.registry import Event, Host  # noqa: E402
from workflows.certificates import render_certificate  # noqa: E402

TITLES = ("Math Night Part {n}", "Literacy Institute, Session {n}", "Trauma-Informed Classrooms ({n})",
          "Robotics for Beginners: Week {n}", "Montana Indian Education for All, Module {n}")


def sample_event(n: int) -> Event:
    """An event with its host, not stored anywhere: the certificate reads only these fields."""
    host = Host(host_id=f"H{n:04d}", name="Great Falls Public Schools", kind=HostKind.MULTIPLE,
                phone="(406) 555-0100", contact_name="Jane Doe", contact_email="jdoe@gfps.k12.mt.us")
    start = dt.date(2026, 10, 1) + dt.timedelta(days=n % 60)
    return Event(event_id=f"E{10000 + n}", host_id=host.host_id, host=host, title=TITLES[n % len(TITLES)].format(n=n),
                 instructor="Ann Lee", start_date=start, end_date=start + dt.timedelta(days=n % 3), online=n % 4 == 0,
                 city="Great Falls", state="MT", zip="59401", hours=Decimal("3.5") + n % 5,
                 status=EventStatus.SCHEDULED)


def one_line_page() -> bytes:
    from weasyprint import HTML

    return HTML(string="<p>PDU certificate</p>").write_pdf()


def seconds_each(work: Callable[[], bytes], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert work().startswith(b"%PDF")
        times.append(time.perf_counter() - started)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 single renders and a batch of 10")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    args = parser.parse_args()
    rounds, batch = (5, 10) if args.quick else (50, 100)
    event = sample_event(1)
    first = seconds_each(lambda: render_certificate(event), 1)[0]
    single = seconds_each(lambda: render_certificate(event), rounds)
    floor = seconds_each(one_line_page, rounds)
    events = [sample_event(n) for n in range(batch)]
    started = time.perf_counter()
    sizes = [len(render_certificate(e)) for e in events]
    batch_seconds = time.perf_counter() - started
    median, p95, floor_median = statistics.median(single), percentile(single, 0.95), statistics.median(floor)
    print(f"first render (loads WeasyPrint and fonts): {first * 1000:.0f} ms")
    print(f"single certificate, {rounds} renders: median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
          f"({sizes[0]:,} bytes)")
    print(f"baseline, WeasyPrint one-line page: median {floor_median * 1000:.0f} ms "
          f"(certificate = {median / floor_median:.1f}x)")
    print(f"batch of {batch} certificates: {batch_seconds:.2f} s ({batch_seconds / batch * 1000:.0f} ms each)")
    if args.json:
        print(json.dumps({"first_ms": round(first * 1000), "median_ms": round(median * 1000),
                          "p95_ms": round(p95 * 1000), "floor_median_ms": round(floor_median * 1000),
                          "batch": batch, "batch_s": round(batch_seconds, 2), "pdf_bytes": sizes[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
