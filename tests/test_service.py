"""The whole service as a newcomer runs it: ``pdubot run`` in its own process, driven over SMTP and HTTP."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import signal
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.db import make_engine, upgrade
from tests.factories import MAILBOX, MailFactory
from tests.faults import healthy
from tests.servers import free_port, wait_until

PDUBOT = str(Path(sys.executable).parent / "pdubot")


def pdubot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PDUBOT, *args], env=env, capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def service(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**env, "SMTP_LISTEN": f"127.0.0.1:{free_port()}", "HTTP_LISTEN": f"127.0.0.1:{free_port()}",
           "OUTBOX_POLL_SECONDS": "0.2"}
    log = open(tmp_path / "service.log", "w")
    process = subprocess.Popen([PDUBOT, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: healthy(f"http://{env['HTTP_LISTEN']}/healthz"), timeout=30), (
            tmp_path / "service.log").read_text()
        env["PID"] = str(process.pid)
        yield env
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def send(env: dict[str, str], raw: bytes) -> None:
    host, port = env["SMTP_LISTEN"].rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=10) as client:
        client.sendmail("jdoe@gfps.k12.mt.us", [MAILBOX], raw)


def outgoing(env: dict[str, str]) -> list[email.message.EmailMessage]:
    path = Path(env["PDUBOT_VAR_DIR"]) / "outbox-maildir"
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in sorted(box.keys())]


def test_it_answers_threads_and_ignores_out_of_office_end_to_end(service, mail: MailFactory):
    send(service, mail.raw(subject="Please remove our cancelled workshop", message_id="<host-1@gfps.k12.mt.us>"))
    assert wait_until(lambda: len(outgoing(service)) == 1, timeout=15)
    (ack,) = outgoing(service)
    assert ack["In-Reply-To"] == "<host-1@gfps.k12.mt.us>"
    assert ack["Subject"].startswith("[PDU-1001] Re: Please remove")

    send(service, mail.raw(subject=ack["Subject"], in_reply_to=ack["Message-ID"], body="It was E10001."))
    send(service, mail.raw(subject=f"Automatic reply: {ack['Subject']}", in_reply_to=ack["Message-ID"],
                           headers={"Auto-Submitted": "auto-replied"}))

    tickets = json.loads(pdubot(service, "tickets", "list", "--json").stdout)
    assert [(t["number"], t["messages"]) for t in tickets] == [(1001, 3)]
    shown = json.loads(pdubot(service, "tickets", "show", "1001", "--json").stdout)
    assert [m["direction"] for m in shown["messages"]] == ["in", "out", "in"]
    assert shown["audit"][0]["action"] == "created"
    assert len(outgoing(service)) == 1  # neither the reply nor the out-of-office was answered


def test_it_shuts_down_cleanly_on_sigterm(service):
    process_id = int(service["PID"])
    import os

    os.kill(process_id, signal.SIGTERM)
    assert wait_until(lambda: not Path(f"/proc/{process_id}").exists() or _is_zombie(process_id), timeout=15)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_it_refuses_to_run_on_a_database_at_an_older_revision(tmp_path: Path, env: dict[str, str]):
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(make_engine(url), "0003")
    result = subprocess.run([PDUBOT, "tickets", "list"], env={**env, "DATABASE_URL": url},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "revision 0003" in result.stderr and "pdubot db upgrade" in result.stderr


def test_a_brand_new_database_is_given_the_schema_by_the_first_command(tmp_path: Path, env: dict[str, str]):
    # No DATABASE_URL: the embedded default, a SQLite file under PDUBOT_VAR_DIR, which does not exist yet.
    fresh = {key: value for key, value in env.items() if key != "DATABASE_URL"}
    fresh["PDUBOT_VAR_DIR"] = str(tmp_path / "state")
    result = subprocess.run([PDUBOT, "tickets", "list"], env=fresh, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "creating the schema" in result.stderr
    assert (tmp_path / "state" / "pdubot.db").exists()
    again = subprocess.run([PDUBOT, "tickets", "list"], env=fresh, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "creating the schema" not in again.stderr
