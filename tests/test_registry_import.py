"""Importing PDUPS CSV exports of hosts, users and events into the registry, directly and through the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import EventStatus, HostKind
from storage.registry import Event, Host, User
from storage.tickets import AuditEntry
from tests.factories import add_event, add_host, add_user
from workflows.registry_import import (
    AUDIT_ACTION,
    EVENTS,
    HOSTS,
    USERS,
    FileRejected,
    ImportResult,
    RecordKind,
    decode_export,
    import_records,
    kind_of_export,
    parse_bool,
    parse_phone,
    text_lines,
)

PDUBOT = Path(sys.executable).parent / "pdubot"
ACTOR = "import:export.csv"


def host_row(**overrides: str) -> dict[str, str]:
    row = {
        "host_id": "H0001", "name": "Great Falls Public Schools", "kind": "multiple", "phone": "406-555-0100",
        "contact_name": "Jane Doe", "contact_email": "jdoe@gfps.k12.mt.us", "contact_phone": "406-555-0142",
        "status": "active",
    }
    return row | overrides


def user_row(**overrides: str) -> dict[str, str]:
    row = {
        "username": "BSmith", "full_name": "Bob Smith", "email": "bsmith@gfps.k12.mt.us", "phone": "",
        "host_id": "H0001", "status": "active",
    }
    return row | overrides


def event_row(**overrides: str) -> dict[str, str]:
    row = {
        "event_id": "E10001", "host_id": "H0001", "title": "Math Night Part 1", "instructor": "Ann Lee",
        "description": "Family math night strategies", "categories": "Mathematics", "start_date": "2026-10-14",
        "end_date": "2026-10-14", "online": "false", "city": "Great Falls", "zip": "59401", "state": "MT",
        "hours": "3.5", "certificates_issued": "", "status": "scheduled",
    }
    return row | overrides


def csv_text(rows: list[dict[str, str]], header: list[str] | None = None) -> str:
    """A CSV export of ``rows``; ``header`` renames or reorders the columns as another tool might."""
    names = list(rows[0]) if rows else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header or names)
    for row in rows:
        writer.writerow([row.get(name, "") for name in names])
    return out.getvalue()


def run_import(
    sessions: sessionmaker[Session], kind: RecordKind, text: str, batch_size: int = 500
) -> ImportResult:
    return import_records(sessions, kind, text_lines(text), ACTOR, batch_size=batch_size)


def reasons(result: ImportResult) -> dict[int, str]:
    return {rejection.line: rejection.reason for rejection in result.rejected}


@pytest.fixture
def host(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        add_host(session, "H0001")
    return "H0001"


def test_it_adds_then_updates_then_leaves_unchanged(sessions):
    helena = host_row(host_id="H0002", name="Helena Public Schools")
    first = run_import(sessions, HOSTS, csv_text([host_row(), helena]))
    changed = run_import(sessions, HOSTS, csv_text([host_row(contact_phone="(406) 555-0199"), helena]))
    again = run_import(sessions, HOSTS, csv_text([host_row(contact_phone="406.555.0199"), helena]))

    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 1)
    assert (again.added, again.updated, again.unchanged, again.rejected) == (0, 0, 2, [])
    with sessions() as session:
        host = session.get(Host, "H0001")
        assert host.contact_phone == "(406) 555-0199"
        assert host.kind is HostKind.MULTIPLE


def test_it_audits_a_summary_per_batch_and_each_update_with_only_the_changed_fields(sessions):
    run_import(sessions, HOSTS, csv_text([host_row(host_id=f"H000{n}") for n in range(1, 4)]), batch_size=2)
    run_import(sessions, HOSTS, csv_text([host_row(host_id="H0001", name="GFPS", status="Inactive")]))

    with sessions() as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [e.after.get("added") for e in entries[:2]] == [2, 1]
    assert entries[0].after["added_ids"] == ["H0001", "H0002"]
    update, summary = entries[2], entries[3]
    assert update.before == {"name": "Great Falls Public Schools", "status": "active"}
    assert update.after == {"name": "GFPS", "status": "inactive"}
    assert summary.after["updated"] == 1
    assert {(e.actor, e.action, e.ticket_id) for e in entries} == {(ACTOR, AUDIT_ACTION, None)}
    assert len(entries) == 4


def test_it_writes_no_audit_entry_when_nothing_changed(sessions):
    text = csv_text([host_row()])
    run_import(sessions, HOSTS, text)
    run_import(sessions, HOSTS, text)

    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count(AuditEntry.id))) == 1


def test_it_matches_usernames_in_any_case_and_keeps_the_stored_spelling(sessions, host):
    run_import(sessions, USERS, csv_text([user_row(username="JDoe")]))
    result = run_import(sessions, USERS, csv_text([user_row(username="jdoe", email="JDoe@GFPS.k12.mt.us")]))

    assert (result.added, result.updated) == (0, 1)
    with sessions() as session:
        user = session.scalars(sa.select(User)).one()
        assert (user.username, user.email) == ("JDoe", "jdoe@gfps.k12.mt.us")


def test_it_rejects_a_username_given_twice_in_any_case(sessions, host):
    result = run_import(sessions, USERS, csv_text([user_row(username="JDoe"), user_row(username="JDOE")]))

    assert result.added == 1
    assert reasons(result) == {3: "username JDOE appears again (first on line 2)"}


def test_it_reads_headers_in_any_case_and_ignores_extra_columns(sessions):
    row = host_row() | {"notes": "call first"}
    header = [f"  {name.upper()} " for name in row]

    result = run_import(sessions, HOSTS, csv_text([row], header=header))

    assert (result.added, result.ignored_columns) == (1, ["NOTES"])
    with sessions() as session:
        assert session.get(Host, "H0001").name == "Great Falls Public Schools"


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"), id="utf-8 with BOM"),
        pytest.param(lambda text: text.encode("utf-8"), id="utf-8"),
        pytest.param(lambda text: text.encode("cp1252"), id="cp1252"),
    ],
)
def test_it_reads_utf8_with_or_without_bom_and_windows_1252(sessions, encoded):
    text = csv_text([host_row(name="École Montessori – Missoula’s own")])

    result = run_import(sessions, HOSTS, decode_export(encoded(text)))

    assert result.added == 1
    with sessions() as session:
        assert session.get(Host, "H0001").name == "École Montessori – Missoula’s own"


def test_it_refuses_a_file_missing_a_required_column(sessions):
    row = host_row()
    del row["name"]

    with pytest.raises(FileRejected, match="missing required column: name"):
        run_import(sessions, HOSTS, csv_text([row]))
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Host)) == 0


def test_it_leaves_a_column_the_file_lacks_as_stored_and_defaults_it_on_insert(sessions):
    with sessions() as session:
        add_host(session, "H0001", contact_email="kept@gfps.k12.mt.us", status="inactive")
        session.commit()
    rows = [host_row(host_id="H0001", name="Renamed District"), host_row(host_id="H0002")]
    for row in rows:
        del row["contact_email"], row["status"], row["kind"]

    result = run_import(sessions, HOSTS, csv_text(rows))

    assert (result.added, result.updated, result.rejected) == (1, 1, [])
    with sessions() as session:
        kept = session.get(Host, "H0001")
        assert (kept.name, kept.contact_email, kept.status) == ("Renamed District", "kept@gfps.k12.mt.us", "inactive")
        added = session.get(Host, "H0002")
        assert (added.contact_email, added.status, added.kind) == ("", "active", HostKind.MULTIPLE)


def test_it_reads_the_headings_and_dates_a_spreadsheet_export_uses(sessions):
    with sessions() as session:
        add_host(session, "H0001")
        session.commit()
    headings = ["Event ID", "Provider ID", "Title of Activity", "Presenter", "Beginning Date", "Ending Date",
                "PDUs", "Certificates Issued"]
    text = csv_text([{"a": "E7", "b": "H0001", "c": "Writers Workshop", "d": "Ann Lee", "e": "10/4/2026",
                      "f": "10/05/2026 00:00", "g": "6.5", "h": ""}], header=headings)

    result = run_import(sessions, EVENTS, text)

    assert (result.added, result.rejected, result.ignored_columns) == (1, [], [])
    with sessions() as session:
        event = session.get(Event, "E7")
        assert (event.title, event.instructor, event.start_date, event.end_date, event.hours) == (
            "Writers Workshop", "Ann Lee", dt.date(2026, 10, 4), dt.date(2026, 10, 5), Decimal("6.5"))
        assert (event.status, event.online, event.certificates_issued) == (EventStatus.SCHEDULED, False, None)


def test_it_reads_day_first_or_two_digit_years_as_errors_not_guesses(sessions):
    with sessions() as session:
        add_host(session, "H0001")
        session.commit()
    rows = [event_row(event_id="E1", start_date="4.10.2026"), event_row(event_id="E2", start_date="10/4/26")]

    result = run_import(sessions, EVENTS, csv_text(rows))

    assert result.added == 0
    assert all("is not a date" in reason for reason in reasons(result).values())


def test_it_refuses_bytes_that_are_no_known_text_encoding():
    with pytest.raises(FileRejected, match="neither UTF-8 nor Windows-1252"):
        decode_export(b"host_id\r\n\x81\x8d\r\n")


def test_it_rejects_bad_host_rows_with_their_line_numbers_and_imports_the_rest(sessions):
    rows = [
        host_row(host_id="H0001"),
        host_row(host_id="H0002", contact_email="jdoe@"),
        host_row(host_id="H0003", phone="555-0142"),
        host_row(host_id="H0004", contact_phone="123-456-7890"),
        host_row(host_id="H0005", kind="several"),
        host_row(host_id="H0006", name=""),
        host_row(host_id="H0007", contact_email="", phone=""),
    ]

    result = run_import(sessions, HOSTS, csv_text(rows))

    assert result.added == 2
    assert reasons(result) == {
        3: "contact_email: 'jdoe@' is not a valid email address: There must be something after the @-sign.",
        4: "phone: '555-0142' has no area code",
        5: "contact_phone: '123-456-7890' is not a valid number (check the area code and exchange)",
        6: "kind: 'several' is not one of: multiple, single",
        7: "name: must not be blank",
    }
    with sessions() as session:
        assert set(session.scalars(sa.select(Host.host_id))) == {"H0001", "H0007"}


def test_it_rejects_bad_event_rows_with_their_line_numbers_and_imports_the_rest(sessions, host):
    rows = [
        event_row(event_id="E1", description="Two lines:\nstill one row"),
        event_row(event_id="E2", start_date="14/10/2026"),
        event_row(event_id="E3", start_date="2026-10-15", end_date="2026-10-14"),
        event_row(event_id="E4", host_id="H9999"),
        event_row(event_id="E5", status="postponed"),
        event_row(event_id="E6", hours="-1"),
        event_row(event_id="E7", hours="NaN"),
        event_row(event_id="E8", certificates_issued="12.5"),
        event_row(event_id="E9", certificates_issued="-3", online="maybe"),
        event_row(event_id="E10"),
    ]

    result = run_import(sessions, EVENTS, csv_text(rows))

    assert result.added == 2
    assert reasons(result) == {
        4: "start_date: '14/10/2026' is not a date (YYYY-MM-DD or MM/DD/YYYY)",
        5: "end_date 2026-10-14 is before start_date 2026-10-15",
        6: "host_id: no host H9999 in the registry",
        7: "status: 'postponed' is not one of: scheduled, cancelled",
        8: "hours: -1 is negative",
        9: "hours: 'NaN' is not a number of hours",
        10: "certificates_issued: '12.5' is not a whole number",
        11: "online: 'maybe' is not one of: true, false, yes, no, 1, 0; certificates_issued: -3 is negative",
    }
    with sessions() as session:
        assert set(session.scalars(sa.select(Event.event_id))) == {"E1", "E10"}


def test_it_rejects_users_of_a_host_not_in_the_registry(sessions, host):
    result = run_import(sessions, USERS, csv_text([user_row(), user_row(username="AJones", host_id="H0404")]))

    assert result.added == 1
    assert reasons(result) == {3: "host_id: no host H0404 in the registry"}


def test_it_rejects_a_row_whose_fields_do_not_line_up_with_the_header(sessions):
    text = csv_text([host_row()]) + "H0002,Helena,multiple\r\n"

    result = run_import(sessions, HOSTS, text)

    assert result.added == 1
    assert "has 3 fields but the header has 8" in reasons(result)[3]


def test_it_stores_event_values_in_their_types(sessions, host):
    rows = [
        event_row(event_id="E1", categories="Mathematics; Literacy ;;STEM", online="Yes", hours="12.25"),
        event_row(event_id="E2", certificates_issued="0", status="Cancelled", end_date="2026-10-16"),
    ]

    run_import(sessions, EVENTS, csv_text(rows))

    with sessions() as session:
        first, second = session.get(Event, "E1"), session.get(Event, "E2")
        assert first.categories == ["Mathematics", "Literacy", "STEM"]
        assert (first.online, first.hours, first.certificates_issued) == (True, Decimal("12.25"), None)
        assert (second.certificates_issued, second.status) == (0, EventStatus.CANCELLED)
        assert second.end_date == dt.date(2026, 10, 16)


def test_it_updates_stored_events_and_counts_identical_ones_unchanged(sessions, host):
    with sessions.begin() as session:
        add_event(session, "E10001")
        add_event(session, "E10002", hours=Decimal("2"))

    result = run_import(
        sessions, EVENTS,
        csv_text([event_row(event_id="E10001", certificates_issued="24"), event_row(event_id="E10002", hours="2.00")]),
    )

    assert (result.added, result.updated, result.unchanged) == (0, 1, 1)
    with sessions() as session:
        assert session.get(Event, "E10001").certificates_issued == 24
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.detail.like("updated%"))).one()
        assert (entry.before, entry.after) == ({"certificates_issued": None}, {"certificates_issued": 24})


def test_it_reports_progress_after_each_batch(sessions, host):
    done: list[int] = []
    text = csv_text([event_row(event_id=f"E{n}") for n in range(5)])

    import_records(sessions, EVENTS, text_lines(text), ACTOR, on_progress=done.append, batch_size=2)

    assert done == [2, 4, 5]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("406.555.0142", "(406) 555-0142"), ("+1 406 555 0142 x12", "(406) 555-0142 ext. 12"),
     ("+44 20 7946 0958", "+44 20 7946 0958"), ("", "")],
)
def test_it_writes_phone_numbers_in_a_readable_form(raw, stored):
    assert parse_phone(raw) == stored


@pytest.mark.parametrize(("raw", "value"), [("TRUE", True), ("yes", True), ("1", True), ("No", False), ("0", False)])
def test_it_reads_the_usual_spellings_of_booleans(raw, value):
    assert parse_bool(raw) is value


def pdubot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PDUBOT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_it_prints_the_summary_and_each_rejection(env, sessions, host, tmp_path):
    with sessions.begin() as session:
        add_user(session, "JDoe", full_name="Jane Doe")
    path = tmp_path / "users.csv"
    path.write_text(csv_text([user_row(username="jdoe", full_name="Jane Q. Doe"), user_row(email="not-an-email")]))

    done = pdubot(env, "import", "users", str(path))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "users.csv: 0 added, 1 updated, 0 unchanged, 1 rejected",
        "  line 3: email: 'not-an-email' is not a valid email address: An email address must have an @-sign.",
    ]
    assert "importing users" in done.stderr


def test_it_prints_a_json_summary_and_exits_1_when_every_row_is_rejected(env, host, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(csv_text([event_row(hours="-2")]))

    done = pdubot(env, "import", "events", "--json", str(path))

    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "added": 0, "updated": 0, "unchanged": 0, "rejected": [{"line": 2, "reason": "hours: -2 is negative"}],
    }


def test_it_exits_2_on_a_file_missing_a_required_column(env, tmp_path):
    path = tmp_path / "hosts.csv"
    path.write_text("host_id,phone\r\nH0001,406-555-0100\r\n")

    done = pdubot(env, "import", "hosts", "--json", str(path))

    assert done.returncode == 2
    assert "missing required column: name" in done.stderr
    assert done.stdout == ""


def test_it_tells_an_export_by_its_columns(tmp_path):
    assert kind_of_export(csv_text([host_row()])) is HOSTS
    assert kind_of_export(csv_text([user_row()])) is USERS
    assert kind_of_export(csv_text([event_row()])) is EVENTS
    assert kind_of_export("Provider ID,Provider Name\r\nH1,Somewhere\r\n") is HOSTS
    with pytest.raises(FileRejected, match="not those of a hosts, users or events export"):
        kind_of_export("name,address\r\nx,y\r\n")


def test_it_imports_a_folder_of_exports_hosts_first_whatever_the_file_names(env, sessions, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    # Named so that name order would put events and users before the hosts they need.
    (folder / "a-events.csv").write_text(csv_text([event_row()]))
    (folder / "b-people.CSV").write_text(csv_text([user_row()]))
    (folder / "c-providers.csv").write_text(csv_text([host_row()]))
    (folder / "notes.txt").write_text("not an export")

    done = pdubot(env, "import", str(folder))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "c-providers.csv: 1 added, 0 updated, 0 unchanged, 0 rejected",
        "b-people.CSV: 1 added, 0 updated, 0 unchanged, 0 rejected",
        "a-events.csv: 1 added, 0 updated, 0 unchanged, 0 rejected",
    ]
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 1
    again = pdubot(env, "import", "files", "--json", str(folder / "c-providers.csv"))
    assert json.loads(again.stdout) == [
        {"file": "c-providers.csv", "kind": "hosts", "added": 0, "updated": 0, "unchanged": 1, "rejected": []},
    ]


def test_it_imports_nothing_when_one_file_of_a_folder_is_not_an_export(env, sessions, tmp_path):
    (tmp_path / "hosts.csv").write_text(csv_text([host_row()]))
    (tmp_path / "zz.csv").write_text("name,address\r\nx,y\r\n")

    done = pdubot(env, "import", str(tmp_path))

    assert done.returncode == 2
    assert "zz.csv: its columns are not those of a hosts, users or events export" in done.stderr
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Host)) == 0


def test_it_names_a_path_that_does_not_exist(env, tmp_path):
    done = pdubot(env, "import", str(tmp_path / "missing"))

    assert done.returncode == 2
    assert "no such file or folder" in done.stderr
