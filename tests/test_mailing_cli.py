"""The scheduled-work commands, run in-process on the test database: subscribers, remind, newsletter, PDFs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from typer.testing import CliRunner

from bot.cli import app
from storage.enums import SubscriberStatus
from storage.mailing import Subscriber
from storage.mailouts import Mailing
from storage.outbox import OutboxItem
from storage.reminders import ReminderSent
from storage.tickets import AuditEntry
from tests.factories import add_event, add_host, add_user
from tests.servers import smtp_sink

runner = CliRunner()


def pdubot(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def test_it_imports_and_lists_subscribers(env, sessions, tmp_path: Path):
    with sessions() as session:
        session.add(Subscriber(email="left@example.org", status=SubscriberStatus.UNSUBSCRIBED))
        session.commit()
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("Email,Name,Organization\n"
                        "ana@example.org,Ana Ruiz,Helena School District\n"
                        "Bo@Example.org,Bo Lee,MSU Billings\n"
                        "not-an-address,Nobody,Nowhere\n"
                        "ana@example.org,Ana Again,\n"
                        "left@example.org,Left Person,Somewhere\n", encoding="utf-8")
    result = pdubot("subscribers", "import", str(csv_file), "--confirmed", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["updated"]) == (2, 1)
    assert [r["line"] for r in summary["rejected"]] == [4, 5]
    listed = json.loads(pdubot("subscribers", "list", "--json").stdout)
    assert listed == [
        {"email": "ana@example.org", "name": "Ana Ruiz", "organization": "Helena School District", "status": "confirmed"},
        {"email": "bo@example.org", "name": "Bo Lee", "organization": "MSU Billings", "status": "confirmed"},
        {"email": "left@example.org", "name": "Left Person", "organization": "Somewhere", "status": "unsubscribed"},
    ]


def test_it_runs_the_nag_for_a_given_day_and_a_dry_run_sends_nothing(env, sessions):
    with sessions() as session:
        add_host(session)
        add_user(session)
        add_event(session, end_date=dt.date(2026, 10, 1))
        session.commit()
    dry = pdubot("remind", "--today", "2026-10-05", "--dry-run")
    assert dry.exit_code == 0 and "would send a digest to jdoe@gfps.k12.mt.us (cc bsmith@gfps.k12.mt.us)" in dry.stdout
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(OutboxItem.id))) == 0
    real = pdubot("remind", "--today", "2026-10-05", "--json")
    assert json.loads(real.stdout)["digests"][0]["stages"] == {"E10001": 3}
    assert "already ran" in pdubot("remind", "--today", "2026-10-05").output
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(ReminderSent.id))) == 1


def test_it_sends_a_newsletter_from_the_shell(env, sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with sessions() as session:
        session.add_all(Subscriber(email=f"r{n}@example.org", status=SubscriberStatus.CONFIRMED) for n in range(5))
        session.commit()
    edition = tmp_path / "november.md"
    edition.write_text("# November\n\nSustained learning works.\n", encoding="utf-8")
    with smtp_sink() as (relay, port):
        monkeypatch.setenv("SMTP_RELAY_URL", f"smtp://127.0.0.1:{port}")
        args = ("newsletter", "send", str(edition), "--edition", "2026-11", "--subject", "PLP Insider", "--yes",
                "--by", "Ann Smith")
        result = pdubot(*args)
        assert result.exit_code == 0, result.output
        assert "5 sent" in result.output
        assert pdubot(*args).exit_code == 0  # a re-run sends nobody anything twice
    assert sorted(r for _, (r,), _ in relay.received) == [f"r{n}@example.org" for n in range(5)]
    with sessions() as session:
        audited = session.execute(sa.select(AuditEntry.action, AuditEntry.actor).where(AuditEntry.ticket_id.is_(None))
                                  .order_by(AuditEntry.id)).all()
        assert audited == [("edition_prepared", "Ann Smith"), ("edition_approved", "Ann Smith")]
        assert session.scalar(sa.select(Mailing.approved_by)) == "Ann Smith"
    assert (Path(env["PDUBOT_VAR_DIR"]) / "secret_key").stat().st_mode & 0o077 == 0


def test_it_writes_certificate_and_report_pdfs(env, sessions, tmp_path: Path):
    with sessions() as session:
        add_host(session)
        add_event(session, end_date=dt.date(2026, 10, 1))
        session.commit()
    certificate = tmp_path / "certificate.pdf"
    assert pdubot("certificate", "E10001", "-o", str(certificate)).exit_code == 0
    assert len(PdfReader(certificate).pages) == 1
    assert pdubot("certificate", "E404", "-o", str(certificate)).exit_code == 1
    report = tmp_path / "report.pdf"
    assert pdubot("report", "--month", "2026-10", "-o", str(report)).exit_code == 0
    assert "Great Falls Public Schools" in PdfReader(report).pages[0].extract_text()
    assert pdubot("report", "--month", "2026-13", "-o", str(report)).exit_code == 2
