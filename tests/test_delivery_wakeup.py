"""Delivery starts as soon as a row is queued, also when intake and delivery run as separate processes."""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from storage.enums import Source
from tests.factories import MAILBOX, MailFactory
from tests.faults import PDUBOT, port_is_closed, service_env
from tests.servers import smtp_sink, wait_until
from workflows.inbox import receive
from workflows.policy import MailboxPolicy

POLL_SECONDS = 30.0  # so long that only a wake-up can explain a quick delivery


@contextmanager
def part(name: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``pdubot run --only NAME`` as the Procfile runs it."""
    with open(log, "wb") as out:
        process = subprocess.Popen([PDUBOT, "run", "--only", name], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_it_wakes_the_outbox_process_when_the_intake_process_queues_an_acknowledgement(
    env: dict[str, str], tmp_path: Path, mail: MailFactory
):
    with smtp_sink() as (relay, relay_port):
        senv = service_env(env, SMTP_RELAY_URL=f"smtp://127.0.0.1:{relay_port}", OUTBOX_POLL_SECONDS=str(POLL_SECONDS))
        host, port = senv["SMTP_LISTEN"].rsplit(":", 1)
        with part("outbox", senv, tmp_path / "outbox.log"), part("intake", senv, tmp_path / "intake.log"):
            assert wait_until(lambda: not port_is_closed(int(port)), timeout=30)
            time.sleep(3.0)  # the outbox process has looked once, found nothing, and sleeps for the poll
            with smtplib.SMTP(host, int(port), timeout=15) as client:
                client.sendmail("host@district.k12.mt.us", [MAILBOX], mail.raw(sender="Host <host@district.k12.mt.us>"))
            accepted = time.monotonic()
            delivered = wait_until(lambda: len(relay.received) == 1, timeout=POLL_SECONDS / 2)
            took = time.monotonic() - accepted
    assert delivered, (tmp_path / "outbox.log").read_text()
    assert took < 5.0, f"the acknowledgement waited {took:.1f} s: the outbox process was not woken"


def test_on_postgresql_any_transaction_that_queues_a_row_wakes_the_outbox_process(
    env: dict[str, str], db_url: str, sessions, tmp_path: Path, mail: MailFactory
):
    # The database announces queued rows itself (a trigger on the outbox), so a row queued by any process,
    # here this test's own transaction rather than the service's intake, wakes the outbox at its commit.
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no NOTIFY: there the service's own processes wake each other (bot/wake.py)")
    with smtp_sink() as (relay, relay_port):
        senv = service_env(env, SMTP_RELAY_URL=f"smtp://127.0.0.1:{relay_port}", OUTBOX_POLL_SECONDS=str(POLL_SECONDS))
        with part("outbox", senv, tmp_path / "outbox.log"):
            time.sleep(5.0)  # started, listening, looked once, found nothing, and sleeps for the poll
            receive(sessions, mail.raw(sender="Host <host@district.k12.mt.us>"), Source.FILE, MailboxPolicy())
            committed = time.monotonic()
            delivered = wait_until(lambda: len(relay.received) == 1, timeout=POLL_SECONDS / 2)
            took = time.monotonic() - committed
    assert delivered, (tmp_path / "outbox.log").read_text()
    assert took < 5.0, f"the acknowledgement waited {took:.1f} s: the outbox process was not woken"
