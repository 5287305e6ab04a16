"""Memory benchmark: peak RSS while one email with a 25 MB attachment goes through intake, and the idle RSS of
``pdubot run``.

Each measurement runs in a fresh Python process, which reports its own figures:
- its baseline: RSS after importing the service and taking a small email through ``receive`` (so lazy
  imports and caches are loaded), before the large email is read;
- its peak (VmHWM) after ``workflows.inbox.receive`` has stored the large email;
- and, in another fresh process, the floor: reading the same file and parsing it with the stdlib
  (``policy.default``), attachment decoded.
A 25 MB attachment is a 33 MB message once base64-encoded; over SMTP the service refuses anything over
SMTP_MAX_BYTES (25 MB) with 552, so this size only arrives by IMAP or ``pdubot ingest``.

    python benchmarks/memory.py            # 25 MB attachment, SQLite and PostgreSQL
    python benchmarks/memory.py --quick    # 5 MB attachment
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LOG_LEVEL", "WARNING")

MB = 1024 * 1024


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """Current and peak resident set size of a process, from /proc (VmRSS, VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def peak_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries the parent's high-water mark over a
    fork and exec into ru_maxrss, which would hide the child's own peak under the parent's size."""
    return rss_mb()[1]


def large_email(path: Path, attachment_mb: int) -> int:
    """A host's request with one PDF-like attachment of ``attachment_mb`` MB, written to ``path``."""
    message = EmailMessage()
    message["From"] = "Jane Doe <jdoe@gfps.k12.mt.us>"
    message["To"] = "OPIPDUPS@mt.gov"
    message["Subject"] = "Sign-in sheets for Math Night"
    message["Message-ID"] = f"<large-{attachment_mb}mb-{time.time_ns()}@gfps.k12.mt.us>"
    message.set_content("Attached are the scanned sign-in sheets. We issued 42 certificates for E10001.")
    message.add_attachment(os.urandom(attachment_mb * MB), maintype="application", subtype="pdf",
                           filename="sign-in-sheets.pdf")
    raw = message.as_bytes()
    path.write_bytes(raw)
    return len(raw)


def child_ingest(url: str, eml: Path) -> dict[str, float]:
    """In this fresh process: baseline after a small email, then the peak after the large one."""
    from storage.db import make_engine, make_sessionmaker
    from storage.enums import Source
    from tests.factories import MailFactory
    from workflows.inbox import receive
    from workflows.policy import MailboxPolicy

    sessions = make_sessionmaker(make_engine(url))
    receive(sessions, MailFactory().raw(), Source.FILE, MailboxPolicy(), acknowledge_host=False)
    baseline = rss_mb()[0]
    baseline_peak = peak_mb()
    receipt = receive(sessions, eml.read_bytes(), Source.FILE, MailboxPolicy(), str(eml), acknowledge_host=False)
    assert receipt.new_ticket, receipt
    return {"baseline_mb": baseline, "baseline_peak_mb": baseline_peak, "peak_mb": peak_mb()}


def child_floor(eml: Path) -> dict[str, float]:
    """In this fresh process: the stdlib parse of the same file, attachment decoded."""
    import email
    import email.policy

    baseline = rss_mb()[0]
    baseline_peak = peak_mb()
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    sizes = [len(part.get_content()) for part in message.iter_attachments()]
    assert sizes, "no attachment"
    return {"baseline_mb": baseline, "baseline_peak_mb": baseline_peak, "peak_mb": peak_mb()}


def run_child(*args: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                            timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def idle_service_rss(url: str, var_dir: Path) -> dict[str, float]:
    """Start ``pdubot run`` on ``url``, wait for /healthz, let it settle, and read its RSS from /proc."""
    from tests.faults import healthy, service_env
    from tests.servers import wait_until

    env = service_env({**os.environ, "DATABASE_URL": url, "PDUBOT_VAR_DIR": str(var_dir)})
    for key in [k for k in env if k.startswith(("SLACK_", "IMAP_", "SMTP_RELAY"))]:
        del env[key]
    process = subprocess.Popen([str(Path(sys.executable).parent / "pdubot"), "run"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_until(lambda: healthy(f"http://{env['HTTP_LISTEN']}/healthz"), timeout=60):
            raise RuntimeError("pdubot run did not become healthy")
        time.sleep(3)  # the scheduler's start-up catch-up and the first outbox polls
        current, peak = rss_mb(process.pid)
        return {"rss_mb": current, "hwm_mb": peak}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 5 MB attachment")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        figures = child_ingest(rest[0], Path(rest[1])) if kind == "ingest" else child_floor(Path(rest[0]))
        print(json.dumps(figures))
        return 0

    from benchmarks.intake import postgres_reachable, scratch_database

    attachment_mb = 5 if args.quick else 25
    kinds = ["sqlite"] + (["postgresql"] if postgres_reachable() else [])
    results: dict[str, object] = {"attachment_mb": attachment_mb}
    with tempfile.TemporaryDirectory(prefix="pdubot-memory-") as tmp:
        folder = Path(tmp)
        eml = folder / "large.eml"
        size = large_email(eml, attachment_mb)
        results["message_mb"] = round(size / MB, 1)
        print(f"one email with a {attachment_mb} MB attachment: {size / MB:.1f} MB as sent")
        floor = run_child("floor", str(eml))
        floor_growth = floor["peak_mb"] - floor["baseline_peak_mb"]
        results["floor"] = {**floor, "growth_mb": round(floor_growth, 1)}
        print(f"floor, stdlib parse:  baseline {floor['baseline_mb']:6.1f} MB, peak {floor['peak_mb']:6.1f} MB, "
              f"growth {floor_growth:6.1f} MB ({floor_growth / (size / MB):.1f}x the message)")
        for kind in kinds:
            with scratch_database(kind, folder) as url:
                ours = run_child("ingest", url, str(eml))
                growth = ours["peak_mb"] - ours["baseline_peak_mb"]
                results[kind] = {**ours, "growth_mb": round(growth, 1)}
                print(f"receive, {kind:<10}: baseline {ours['baseline_mb']:6.1f} MB, peak {ours['peak_mb']:6.1f} MB, "
                      f"growth {growth:6.1f} MB ({growth / (size / MB):.1f}x the message, "
                      f"{growth / max(floor_growth, 0.1):.1f}x the floor's growth)")
        with scratch_database("sqlite", folder) as url:
            idle = idle_service_rss(url, folder / "var")
        results["idle_service"] = idle
        print(f"pdubot run, idle after /healthz (SQLite): VmRSS {idle['rss_mb']:.1f} MB, VmHWM {idle['hwm_mb']:.1f} MB")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
