"""Slack card latency: from an email's SMTP 250 to its card reaching Slack, through the whole service.

``pdubot run`` runs as its own process on a fresh SQLite database, with Slack pointed at the local fake
Web API (tests/slack_fake.py) running in this process. Emails go to the service's SMTP intake one after
another with smtplib; for each, the clock starts when the 250 reply to DATA arrives and stops when the
card's chat.postMessage reaches the fake. The target is p95 under 1 second.

    python benchmarks/slack_latency.py            # 200 emails
    python benchmarks/slack_latency.py --quick    # 20 emails, for CI
    python benchmarks/slack_latency.py --database-url postgresql://user@host/empty_db
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.slack_fake import BOT_TOKEN, CHANNEL, FakeSlack, fake_slack  # noqa: E402

PDUBOT = str(Path(sys.executable).parent / "pdubot")
MAILBOX = "OPIPDUPS@mt.gov"
TARGET_P95 = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank: the smallest value with at least ``pct`` percent of values at or below it."""
    ordered = sorted(values)
    return ordered[max(int(-(-pct * len(ordered) // 100)) - 1, 0)]


def email_for(n: int) -> EmailMessage:
    """A request that needs staff: a cancellation from someone the registry does not know."""
    message = EmailMessage()
    message["From"] = f"Host {n} <host{n}@district{n}.example.org>"
    message["To"] = MAILBOX
    message["Subject"] = f"Cancelled workshop bench-{n:04d}"
    message["Message-ID"] = f"<bench-{n}-{time.time_ns()}@district{n}.example.org>"
    message.set_content(f"Hello, please remove our cancelled workshop from PDUPS. Reference bench-{n:04d}.")
    return message


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pdubot run exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("SMTP intake did not start")


def card_times(fake: FakeSlack) -> dict[str, float]:
    """When the first card naming each benchmark email arrived at the fake."""
    arrived: dict[str, float] = {}
    for call in fake.channel_posts():
        words = [w for w in str(call.args.get("text", "")).split() if w.startswith("bench-")]
        for word in words:
            arrived.setdefault(word, call.at)
    return arrived


def send_all(smtp_port: int, count: int) -> dict[str, float]:
    """Send ``count`` emails; the monotonic time each 250 arrived, by the email's bench tag."""
    accepted: dict[str, float] = {}
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        for n in range(count):
            message = email_for(n)
            client.send_message(message)
            accepted[f"bench-{n:04d}"] = time.monotonic()  # send_message returns on the 250 reply to DATA
    return accepted


def run(count: int, database_url: str | None = None) -> dict[str, object]:
    with fake_slack() as fake, tempfile.TemporaryDirectory() as tmp:
        smtp_port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url or f"sqlite:///{tmp}/pdubot.db",
               "PDUBOT_VAR_DIR": f"{tmp}/var",
               "SMTP_LISTEN": f"127.0.0.1:{smtp_port}", "HTTP_LISTEN": f"127.0.0.1:{free_port()}",
               "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": fake.api_url, "SLACK_CHANNEL": CHANNEL,
               "SLACK_SIGNING_SECRET": "benchmark", "LOG_LEVEL": "WARNING"}
        for key in ("SLACK_APP_TOKEN", "IMAP_URL", "SMTP_RELAY_URL"):
            env.pop(key, None)
        subprocess.run([PDUBOT, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
        with open(Path(tmp) / "service.log", "wb") as log:
            process = subprocess.Popen([PDUBOT, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for_port(smtp_port, process)
                started = time.monotonic()
                accepted = send_all(smtp_port, count)
                deadline = time.monotonic() + 60
                while len(card_times(fake)) < count and time.monotonic() < deadline:
                    time.sleep(0.05)
                elapsed = time.monotonic() - started
            finally:
                process.terminate()
                process.wait(timeout=30)
        arrived = card_times(fake)
        cards_per_email = {tag: sum(tag in str(c.args.get("text")) for c in fake.channel_posts()) for tag in accepted}
    latencies = [arrived[tag] - at for tag, at in accepted.items() if tag in arrived]
    return {
        "emails": count,
        "cards": len(arrived),
        "duplicate_cards": sum(n > 1 for n in cards_per_email.values()),
        "seconds": round(elapsed, 2),
        "latency_s": {
            "p50": round(percentile(latencies, 50), 4) if latencies else None,
            "p95": round(percentile(latencies, 95), 4) if latencies else None,
            "p99": round(percentile(latencies, 99), 4) if latencies else None,
            "max": round(max(latencies), 4) if latencies else None,
            "mean": round(statistics.fmean(latencies), 4) if latencies else None,
        },
        "target_p95_s": TARGET_P95,
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "database": (database_url or "sqlite").split(":", 1)[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 emails instead of 200")
    parser.add_argument("--emails", type=int, help="how many emails to send")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--database-url", help="an empty database to use instead of a fresh SQLite file")
    args = parser.parse_args()
    figures = run(args.emails or (20 if args.quick else 200), args.database_url)
    latency = figures["latency_s"]
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['cards']}/{figures['emails']} cards in {figures['seconds']} s on {figures['machine']}")
        print(f"SMTP 250 -> card: p50 {latency['p50']} s, p95 {latency['p95']} s, "  # type: ignore[index]
              f"p99 {latency['p99']} s, max {latency['max']} s")  # type: ignore[index]
        met = latency["p95"] is not None and latency["p95"] < TARGET_P95  # type: ignore[index,operator]
        print(f"target p95 < {TARGET_P95} s: {'met' if met else 'MISSED'}")
    return 0 if figures["cards"] == figures["emails"] and not figures["duplicate_cards"] else 1


if __name__ == "__main__":
    sys.exit(main())
