"""Mail-out benchmark: how fast a PLP Insider edition reaches a local SMTP server, against that server's limit.

In one run, against one aiosmtpd server on loopback (its own process, so it has its own core):
  (a) blast:  pre-rendered messages over a few reused connections, no database, from both aiosmtplib and
              smtplib threads; the faster of the two is the server's practical limit;
  (b) send:   the real edition send (delivery rows claimed and marked in SQLite, per-subscriber copies,
              pooled connections), exactly as ``pdubot newsletter send`` does it;
  (c) naive:  a loop that opens one connection per message (timed on a sample);

The machine is shared, and its load moves from one minute to the next, so the smtplib blast and the edition
send are measured in rounds, each blast right before a send of a new edition to the same list; every
round's ratio is against the limit measured in that round.

    python benchmarks/mailout.py            # 10,000 subscribers, 3 rounds
    python benchmarks/mailout.py --quick    # 500 subscribers, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EDITION = """# Planning professional learning that lasts

Professional learning works best when it is **sustained**, collaborative, job-embedded and focused on
what happens in classrooms. This month we look at three ways hosts can build a series rather than a
single workshop.

## 1. Start from a needs analysis

Ask the educators you serve what they need most. A short survey before planning keeps the event
focused. Learning Forward's workbook is a good place to start.

## 2. Plan for follow-up

- Schedule a second session four to six weeks later
- Give participants something to try in their classroom in between
- Collect evidence of impact

## 3. Report your certificate counts

After every event, record the number of certificates issued in PDUPS. Educators rely on it to renew
their licences.

The Professional Learning Provider Network Collaborative meets on the third Tuesday of each month,
3:30-4:30 p.m. We hope to see you there.
"""


def serve(port_file: str) -> None:
    """The benchmark's SMTP server: accepts and discards, like a relay with an infinitely fast disk."""
    import threading

    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    Path(port_file).write_text(str(port))
    threading.Event().wait()


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = workdir / "port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the benchmark SMTP server did not start")
        time.sleep(0.05)
    return process, int(port_file.read_text())


def setup_database(workdir: Path, subscribers: int, editions: int = 1) -> tuple[object, list[int]]:
    """A database with ``subscribers`` confirmed readers and ``editions`` approved editions (their ids)."""
    from storage.base import utcnow
    from storage.db import make_engine, make_sessionmaker, upgrade
    from storage.enums import SubscriberStatus
    from storage.mailing import Subscriber
    from workflows.newsletter import approve_edition, prepare_edition

    engine = make_engine(f"sqlite:///{workdir / 'bench.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        session.add_all(Subscriber(email=f"reader{n:05d}@example.org", name=f"Reader {n}",
                                   status=SubscriberStatus.CONFIRMED) for n in range(subscribers))
        mailings = []
        for n in range(editions):
            key = f"bench-{n + 1}"
            mailings.append(prepare_edition(session, EDITION, key, "PLP Insider: planning professional learning "
                                            "that lasts", actor="benchmark"))
            approve_edition(session, key, "benchmark", utcnow())
        session.commit()
        return sessions, [mailing.id for mailing in mailings]


async def blast(port: int, messages: list[tuple[str, bytes]], sender: str, connections: int) -> int:
    """(a) Pre-rendered messages over ``connections`` reused connections, nothing else."""
    import aiosmtplib

    queue = iter(messages)  # shared, so a connection that gets ahead takes more and none idles at the end

    async def one_connection() -> int:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        client.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        for address, raw in queue:
            await client.sendmail(sender, [address], raw)
            sent += 1
        await client.quit()
        return sent

    return sum(await asyncio.gather(*(one_connection() for _ in range(connections))))


def threaded_blast(port: int, messages: list[tuple[str, bytes]], sender: str, connections: int) -> int:
    """(a) The same blast from smtplib in threads, a client with less per-message overhead."""
    import threading

    # One shared queue rather than a fixed share each: with fixed shares the GIL's favourite thread finishes
    # early and the blast ends at the pace of the slowest connection, which understates the server's limit.
    lock, queue = threading.Lock(), iter(messages)

    def take() -> tuple[str, bytes] | None:
        with lock:
            return next(queue, None)

    def one_connection() -> None:
        with smtplib.SMTP("127.0.0.1", port) as client:
            while (item := take()) is not None:
                client.sendmail(sender, [item[0]], item[1])

    threads = [threading.Thread(target=one_connection) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(messages)


async def naive(port: int, messages: list[tuple[str, bytes]], sender: str) -> int:
    """(c) One connection per message, one after another, with the same client library as (a) and (b)."""
    import aiosmtplib

    for address, raw in messages:
        await aiosmtplib.send(raw, sender=sender, recipients=[address], hostname="127.0.0.1", port=port,
                              start_tls=False)
    return len(messages)


def timed(work) -> tuple[int, float]:  # noqa: ANN001
    start = time.perf_counter()
    count = work()
    return count, time.perf_counter() - start


def run(subscribers: int, connections: int, naive_sample: int, rounds: int) -> dict[str, object]:
    from bot.mailout import bulk_message_for, bulk_transport, send_mailing
    from workflows.policy import MailboxPolicy

    policy, secret, public_url = MailboxPolicy(), b"benchmark-secret", "https://pdubot.opi.mt.gov"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, port = start_server(workdir)
        try:
            sessions, mailing_ids = setup_database(workdir, subscribers, rounds)
            message = bulk_message_for(sessions, mailing_ids[0], policy, public_url, secret)
            rendered = [(f"reader{n:05d}@example.org", message.personalize(f"reader{n:05d}@example.org"))
                        for n in range(subscribers)]
            a_count, a_seconds = timed(lambda: asyncio.run(blast(port, rendered, policy.address, connections)))

            def relay():  # noqa: ANN202
                return bulk_transport(f"smtp://127.0.0.1:{port}", workdir / "unused")

            reports = []

            def send(mailing_id: int) -> int:
                reports.append(asyncio.run(send_mailing(sessions, mailing_id, policy, public_url, secret, relay,
                                                        connections)))
                return reports[-1].sent

            measured = []
            for mailing_id in mailing_ids:
                blasted = timed(lambda: threaded_blast(port, rendered, policy.address, connections))
                measured.append((blasted, timed(lambda: send(mailing_id))))  # noqa: B023 (called at once)
            sample = rendered[:naive_sample]
            c_count, c_seconds = timed(lambda: asyncio.run(naive(port, sample, policy.address)))
        finally:
            server.terminate()
            server.wait(10)
    asyncio_rate = a_count / a_seconds
    per_round = [{"threaded_blast": t_count / t_seconds, "send": b_count / b_seconds,
                  # The practical limit is what the server accepts from the faster of the two clients.
                  "ratio": b_count / b_seconds / max(asyncio_rate, t_count / t_seconds)}
                 for (t_count, t_seconds), (b_count, b_seconds) in measured]
    rates = {"blast": max(asyncio_rate, *(r["threaded_blast"] for r in per_round)),
             "send": max(r["send"] for r in per_round), "naive": c_count / c_seconds,
             "threaded_blast": max(r["threaded_blast"] for r in per_round), "asyncio_blast": asyncio_rate}
    return {
        "subscribers": subscribers,
        "connections": connections,
        "message_bytes": len(rendered[0][1]),
        "delivered": {"blast": min(t_count for (t_count, _), _ in measured),
                      "send": min(b_count for _, (b_count, _) in measured), "naive": c_count},
        "rounds": [{k: round(v, 3 if k == "ratio" else 1) for k, v in r.items()} for r in per_round],
        "per_second": {k: round(v, 1) for k, v in rates.items()},  # the best of the rounds, for each
        "send_vs_blast_per_round_median": round(statistics.median(r["ratio"] for r in per_round), 3),
        "send_vs_blast": round(rates["send"] / rates["blast"], 3),  # best send against the best limit
        "send_vs_naive": round(rates["send"] / rates["naive"], 2),
        "send_report": reports[-1].as_json(),
        "load_average": [round(x, 1) for x in os.getloadavg()],  # the machine is shared: say how busy it was
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 subscribers, for CI")
    parser.add_argument("--subscribers", type=int, default=None)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="blast-then-send rounds, each with a new edition")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    subscribers = args.subscribers or (500 if args.quick else 10_000)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    results = run(subscribers, args.connections, min(subscribers, 300 if args.quick else 1000), max(1, args.rounds))
    if args.json:
        print(json.dumps(results))
    else:
        rate = results["per_second"]
        print(f"{subscribers} subscribers, {args.connections} connections, {results['message_bytes']} bytes a message")
        for n, r in enumerate(results["rounds"], 1):
            print(f"round {n}: (a) smtplib blast {r['threaded_blast']:8.1f} msg/s, (b) edition send "
                  f"{r['send']:8.1f} msg/s, (b)/(a) = {r['ratio']}")
        print(f"(a) blast, best of the rounds:               {rate['blast']:8.1f} msg/s (the faster client)")
        print(f"    from aiosmtplib: {rate['asyncio_blast']:8.1f} msg/s; from smtplib threads: {rate['threaded_blast']:8.1f} msg/s")
        print(f"(b) edition send, best of the rounds:        {rate['send']:8.1f} msg/s")
        print(f"(c) naive, one connection per message:      {rate['naive']:8.1f} msg/s (sample)")
        print(f"(b)/(a): median of the rounds {results['send_vs_blast_per_round_median']}, best against best "
              f"{results['send_vs_blast']}; (b)/(c) = {results['send_vs_naive']}")
        print(f"load average at the end (1, 5, 15 min): {results['load_average']}")
    delivered = results["delivered"]
    return 0 if delivered["blast"] == delivered["send"] == subscribers else 1


if __name__ == "__main__":
    sys.exit(main())
