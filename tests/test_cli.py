"""The command-line contracts other tools rely on: ingest, parse --json, events show --json."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from storage.enums import Channel
from storage.outbox import OutboxItem
from tests.corpora import CORPORA, REGISTRY
from tests.factories import MailFactory

PDUBOT = str(Path(sys.executable).parent / "pdubot")


def pdubot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PDUBOT, *args], env=env, capture_output=True, text=True, timeout=120)


def write_maildir(path: Path, messages: list[bytes]) -> None:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    box.close()


def test_it_ingests_files_folders_and_maildirs_once_without_answering(env, sessions, mail: MailFactory, tmp_path: Path):
    folder = tmp_path / "emls"
    folder.mkdir()
    (folder / "a.eml").write_bytes(mail.raw(subject="First"))
    (folder / "b.eml").write_bytes(mail.raw(subject="Second"))
    write_maildir(tmp_path / "box", [mail.raw(subject="Third"), (folder / "a.eml").read_bytes()])

    result = pdubot(env, "ingest", str(folder), str(tmp_path / "box"))

    assert result.returncode == 0, result.stderr
    assert "3 tickets" in result.stderr and "1 duplicates" in result.stderr
    tickets = json.loads(pdubot(env, "tickets", "list", "--json").stdout)
    assert sorted(t["subject"] for t in tickets) == ["First", "Second", "Third"]
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(OutboxItem.channel == Channel.EMAIL)) == 0


def test_it_answers_ingested_mail_only_when_asked(env, sessions, mail: MailFactory, tmp_path: Path):
    (tmp_path / "a.eml").write_bytes(mail.raw())
    assert pdubot(env, "ingest", "--acknowledge", str(tmp_path / "a.eml")).returncode == 0
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(OutboxItem.id)).where(OutboxItem.channel == Channel.EMAIL)) == 1


def test_it_parses_without_storing_and_gives_every_file_a_line(env, sessions, tmp_path: Path):
    for kind in ("hosts", "users", "events"):
        assert pdubot(env, "import", kind, str(REGISTRY / f"{kind}.csv")).returncode == 0
    sample = sorted((CORPORA / "corpus" / "emails").glob("*.eml"))[:3]
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(bytes(range(256)))
    missing = tmp_path / "missing.eml"

    result = pdubot(env, "parse", "--json", *map(str, sample), str(garbage), str(missing))

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [*map(str, sample), str(garbage), str(missing)]
    for line in lines:
        assert {"file", "kind", "confidence", "host_id", "event_id", "fields"} <= set(line)
    assert lines[-2]["kind"] == "unreadable" and lines[-1]["kind"] == "unreadable"
    expected = json.loads((CORPORA / "corpus" / "expected.json").read_text())[:3]
    assert [(l["kind"], l["host_id"]) for l in lines[:3]] == [(e["kind"], e["host_id"]) for e in expected]
    assert json.loads(pdubot(env, "tickets", "list", "--json").stdout) == []


def test_it_shows_an_event_from_the_registry(env, sessions):
    for kind in ("hosts", "users", "events"):
        pdubot(env, "import", kind, str(REGISTRY / f"{kind}.csv"))
    shown = json.loads(pdubot(env, "events", "show", "E10001", "--json").stdout)
    assert (shown["event_id"], shown["host_id"], shown["hours"]) == ("E10001", "H0025", "20.00")
    assert pdubot(env, "events", "show", "E99999", "--json").returncode == 1


def test_it_escapes_what_the_host_wrote_in_the_html_acknowledgement(env, sessions, mail: MailFactory, tmp_path: Path):
    (tmp_path / "a.eml").write_bytes(mail.raw(subject='<script>alert("x")</script> & more'))
    pdubot(env, "ingest", "--acknowledge", str(tmp_path / "a.eml"))
    with sessions() as session:
        body = session.scalar(sa.select(OutboxItem.body).where(OutboxItem.channel == Channel.EMAIL))
    html = email.message_from_bytes(body, policy=email.policy.default).get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "&amp; more" in html
