"""IMAP intake against a real Dovecot: position by UID not \\Seen, one ticket per message, marked done after commit."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.imap_intake import DoneMarking, ImapIntake, ImapUrl, keeps_flag
from bot.settings import Settings
from storage.db import make_engine, make_sessionmaker, metadata
from storage.mailstate import ImapCursor
from storage.tickets import Message, Ticket
from tests.conftest import require
from tests.dovecot import DOVECOT, MINIMAL_CAPABILITY, PASSWORD, USER, Dovecot, dovecot_server
from tests.factories import MailFactory
from tests.servers import wait_until
from workflows.inbox import Receipt
from workflows.policy import MailboxPolicy

DONE = "$PdubotDone"
SEEN = b"\\Seen"
DELETED = b"\\Deleted"
STOP_SECONDS = 2.0
DEADLINE = 5.0


def dovecot_or_skip(capability: str = "") -> Iterator[Dovecot]:
    require(DOVECOT.exists(), f"Dovecot is not installed at {DOVECOT} (apt-get install dovecot-imapd)")
    with dovecot_server(capability) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    yield from dovecot_or_skip()


@pytest.fixture(scope="module")
def minimal_dovecot() -> Iterator[Dovecot]:
    """A server that offers neither IDLE nor MOVE."""
    yield from dovecot_or_skip(MINIMAL_CAPABILITY)


def new_folder(server: Dovecot) -> str:
    """A fresh folder per test, so tests sharing one server never see each other's mail."""
    name = f"T{uuid.uuid4().hex[:12]}"
    with server.client() as client:
        client.create_folder(name)
    return name


@pytest.fixture
def folder(dovecot: Dovecot) -> str:
    return new_folder(dovecot)


@pytest.fixture
def sqlite_sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    """For tests about the IMAP side alone, which need not run on every database."""
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def make_intake(
    sessions: sessionmaker[Session],
    server: Dovecot,
    folder: str,
    receipts: list[Receipt] | None = None,
    flag: str = DONE,
    done_folder: str = "",
    password: str = PASSWORD,
    idle_seconds: float = 600,
    poll_seconds: float = 30,
) -> ImapIntake:
    return ImapIntake(
        sessions,
        MailboxPolicy(),
        ImapUrl.parse(server.url(folder, password=password)),
        DoneMarking(flag, done_folder),
        on_receipt=receipts.append if receipts is not None else None,
        idle_seconds=idle_seconds,
        poll_seconds=poll_seconds,
    )


def deliver(server: Dovecot, folder: str, raw: bytes, *flags: bytes | str) -> None:
    with server.client() as client:
        client.append(folder, raw, flags=flags)


def flags_by_subject(server: Dovecot, folder: str) -> dict[str, set[bytes]]:
    """Each message's flags, read through ENVELOPE so that looking does not set \\Seen either."""
    with server.client(folder) as client:
        uids = client.search(["ALL"])
        fetched = client.fetch(uids, ["FLAGS", "ENVELOPE"]) if uids else {}
    return {data[b"ENVELOPE"].subject.decode(): set(data[b"FLAGS"]) for data in fetched.values()}


def is_done(server: Dovecot, folder: str, *subjects: str) -> bool:
    flags = flags_by_subject(server, folder)
    return all(DONE.encode() in flags.get(subject, set()) for subject in subjects)


def count_tickets(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(sa.select(sa.func.count(Ticket.id))) or 0


def count_inbound(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(sa.select(sa.func.count(Message.id)).where(Message.direction == "in")) or 0


def cursor_of(sessions: sessionmaker[Session], server: Dovecot, folder: str) -> ImapCursor | None:
    with sessions() as session:
        return session.get(ImapCursor, ImapUrl.parse(server.url(folder)).mailbox_key)


@contextmanager
def running(intake: ImapIntake) -> Iterator[threading.Event]:
    """``run_forever`` on a worker thread, as the service runs it; it must return soon after ``stop``."""
    stop = threading.Event()
    thread = threading.Thread(target=intake.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=STOP_SECONDS)
    assert not thread.is_alive(), f"run_forever did not return within {STOP_SECONDS} s of stop"


def test_it_turns_mail_a_person_already_read_into_tickets_and_leaves_seen_alone(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory
):
    deliver(dovecot, folder, mail.raw(subject="Opened by staff"), SEEN)
    deliver(dovecot, folder, mail.raw(subject="Not opened yet"))

    assert make_intake(sessions, dovecot, folder).run_once() == 2

    assert count_tickets(sessions) == 2
    flags = flags_by_subject(dovecot, folder)
    assert {SEEN, DONE.encode()} <= flags["Opened by staff"]
    assert DONE.encode() in flags["Not opened yet"]
    assert SEEN not in flags["Not opened yet"]


def test_it_makes_one_ticket_per_message_across_a_restart(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory, env: dict[str, str]
):
    settings = Settings(_env_file=None, IMAP_URL=dovecot.url(folder))  # type: ignore[call-arg]
    first: list[Receipt] = []
    deliver(dovecot, folder, mail.raw(subject="First"))
    deliver(dovecot, folder, mail.raw(subject="Second"))
    with running(ImapIntake.from_settings(sessions, settings, on_receipt=first.append)):
        assert wait_until(lambda: is_done(dovecot, folder, "First", "Second"), timeout=DEADLINE)

    second: list[Receipt] = []
    deliver(dovecot, folder, mail.raw(subject="Third"))
    deliver(dovecot, folder, mail.raw(subject="Fourth"))
    with running(ImapIntake.from_settings(sessions, settings, on_receipt=second.append)):
        assert wait_until(lambda: is_done(dovecot, folder, "Third", "Fourth"), timeout=DEADLINE)

    assert len(first) == 2 and len(second) == 2
    assert all(r.new_ticket and not r.duplicate for r in first + second)
    assert count_tickets(sessions) == 4
    assert count_inbound(sessions) == 4


def test_it_flags_a_message_done_once_it_is_stored(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory
):
    deliver(dovecot, folder, mail.raw(subject="Please flag me"))

    make_intake(sessions, dovecot, folder).run_once()

    assert is_done(dovecot, folder, "Please flag me")
    cursor = cursor_of(sessions, dovecot, folder)
    assert cursor is not None and cursor.last_uid == 1
    with sessions() as session:
        stored = session.scalars(sa.select(Message).where(Message.direction == "in")).one()
        assert stored.source.value == "imap"
        assert stored.source_ref.endswith(f";UIDVALIDITY={cursor.uidvalidity}/;UID=1")
        assert PASSWORD not in stored.source_ref


@pytest.mark.parametrize("flag", ["", DONE], ids=["move-only", "flag-and-move"])
def test_it_moves_done_messages_to_the_done_folder(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory, flag: str
):
    done_folder = f"{folder}-done"  # the intake creates it
    deliver(dovecot, folder, mail.raw(subject="Read one"), SEEN)
    deliver(dovecot, folder, mail.raw(subject="Unread one"))
    intake = make_intake(sessions, dovecot, folder, flag=flag, done_folder=done_folder)

    assert intake.run_once() == 2
    assert intake.run_once() == 0

    assert flags_by_subject(dovecot, folder) == {}
    moved = flags_by_subject(dovecot, done_folder)
    assert set(moved) == {"Read one", "Unread one"}
    assert SEEN in moved["Read one"] and SEEN not in moved["Unread one"]
    assert all((DONE.encode() in f) == bool(flag) for f in moved.values())
    assert count_tickets(sessions) == 2


def test_it_copies_and_expunges_when_the_server_cannot_move(
    minimal_dovecot: Dovecot, sessions: sessionmaker[Session], mail: MailFactory
):
    folder = new_folder(minimal_dovecot)
    deliver(minimal_dovecot, folder, mail.raw(subject="Old server"))
    deliver(minimal_dovecot, folder, mail.raw(subject="Staff deleted this"), DELETED)  # not ours to expunge

    make_intake(sessions, minimal_dovecot, folder, done_folder=f"{folder}-done").run_once()

    left = flags_by_subject(minimal_dovecot, folder)
    assert "Old server" not in left
    moved = flags_by_subject(minimal_dovecot, f"{folder}-done")
    assert set(moved) == {"Old server", "Staff deleted this"}
    assert DELETED not in moved["Old server"]
    assert count_tickets(sessions) == 2


def test_it_makes_no_duplicates_when_uidvalidity_changes(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory
):
    marked, unmarked, new = (mail.raw(subject=s) for s in ("Marked", "Unmarked", "New"))
    deliver(dovecot, folder, marked)
    deliver(dovecot, folder, unmarked)
    make_intake(sessions, dovecot, folder).run_once()
    before = cursor_of(sessions, dovecot, folder)

    with dovecot.client() as client:  # the folder is rebuilt: a migration keeps one flag and loses another
        client.delete_folder(folder)
        client.create_folder(folder)
    deliver(dovecot, folder, marked, DONE)
    deliver(dovecot, folder, unmarked)
    deliver(dovecot, folder, new)
    receipts: list[Receipt] = []
    make_intake(sessions, dovecot, folder, receipts).run_once()

    after = cursor_of(sessions, dovecot, folder)
    assert before is not None and after is not None and after.uidvalidity != before.uidvalidity
    assert [(r.duplicate, r.new_ticket) for r in receipts] == [(True, False), (False, True)]
    assert count_tickets(sessions) == 3
    assert count_inbound(sessions) == 3
    assert is_done(dovecot, folder, "Marked", "Unmarked", "New")


def test_it_marks_done_what_was_stored_just_before_a_crash(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory
):
    deliver(dovecot, folder, mail.raw(subject="Stored, never flagged"))
    make_intake(sessions, dovecot, folder).run_once()
    with dovecot.client(folder) as client:  # as if the process died between the commit and the STORE
        client.remove_flags([1], [DONE])

    receipts: list[Receipt] = []
    assert make_intake(sessions, dovecot, folder, receipts).run_once() == 0

    assert receipts == []
    assert is_done(dovecot, folder, "Stored, never flagged")
    assert count_inbound(sessions) == 1


def test_it_reads_mail_that_arrives_while_idling(
    dovecot: Dovecot, folder: str, sessions: sessionmaker[Session], mail: MailFactory
):
    deliver(dovecot, folder, mail.raw(subject="Before"))
    # A one-second IDLE is re-issued while the test waits; polling every 30 s could not meet the deadline.
    intake = make_intake(sessions, dovecot, folder, idle_seconds=1, poll_seconds=30)
    with running(intake):
        assert wait_until(lambda: is_done(dovecot, folder, "Before"), timeout=DEADLINE)
        time.sleep(1.2)
        deliver(dovecot, folder, mail.raw(subject="While idling"))
        assert wait_until(lambda: is_done(dovecot, folder, "While idling"), timeout=DEADLINE)

    assert count_tickets(sessions) == 2


def test_it_polls_when_the_server_cannot_idle(
    minimal_dovecot: Dovecot, sessions: sessionmaker[Session], mail: MailFactory
):
    folder = new_folder(minimal_dovecot)
    with running(make_intake(sessions, minimal_dovecot, folder, poll_seconds=0.2)):
        assert wait_until(lambda: cursor_of(sessions, minimal_dovecot, folder) is not None, timeout=DEADLINE)
        deliver(minimal_dovecot, folder, mail.raw(subject="Polled"))
        assert wait_until(lambda: is_done(minimal_dovecot, folder, "Polled"), timeout=DEADLINE)

    assert count_tickets(sessions) == 1


def test_it_reconnects_when_the_server_drops_the_connection(
    dovecot: Dovecot, folder: str, sqlite_sessions: sessionmaker[Session], mail: MailFactory
):
    with running(make_intake(sqlite_sessions, dovecot, folder)):
        assert wait_until(lambda: cursor_of(sqlite_sessions, dovecot, folder) is not None, timeout=DEADLINE)
        dovecot.kick()
        deliver(dovecot, folder, mail.raw(subject="After the drop"))
        assert wait_until(lambda: is_done(dovecot, folder, "After the drop"), timeout=DEADLINE)


def test_it_returns_from_run_forever_within_two_seconds_of_stop(
    dovecot: Dovecot, folder: str, sqlite_sessions: sessionmaker[Session]
):
    stop = threading.Event()
    thread = threading.Thread(target=make_intake(sqlite_sessions, dovecot, folder).run_forever, args=(stop,))
    thread.start()
    assert wait_until(lambda: cursor_of(sqlite_sessions, dovecot, folder) is not None, timeout=DEADLINE)
    time.sleep(0.3)  # into IDLE

    asked = time.monotonic()
    stop.set()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert time.monotonic() - asked < STOP_SECONDS


def test_it_keeps_retrying_a_refused_login_without_logging_the_password(
    dovecot: Dovecot, folder: str, sqlite_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
):
    wrong = "not-the-p@ssword"
    caplog.set_level(logging.INFO, logger="bot.imap_intake")

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "bot.imap_intake" and "login" in r.getMessage()]

    with running(make_intake(sqlite_sessions, dovecot, folder, password=wrong)):
        assert wait_until(lambda: len(refusals()) >= 2, timeout=DEADLINE)

    assert all(r.levelno == logging.ERROR for r in refusals())
    assert USER in refusals()[0].getMessage()
    assert wrong not in caplog.text and "p%40ssword" not in caplog.text


def test_it_leaves_the_message_unflagged_when_the_database_is_unreachable(
    dovecot: Dovecot, folder: str, mail: MailFactory
):
    unreachable = sessionmaker(sa.create_engine("sqlite:////nonexistent-folder/pdubot.db"))
    deliver(dovecot, folder, mail.raw(subject="Nowhere to go"))

    with pytest.raises(OperationalError):
        make_intake(unreachable, dovecot, folder).run_once()

    assert DONE.encode() not in flags_by_subject(dovecot, folder)["Nowhere to go"]


@pytest.fixture
def half_built_database(tmp_path: Path) -> Iterator[sa.Engine]:
    """A database where the IMAP cursor can be saved but no message can, until the test adds the other tables."""
    engine = make_engine(f"sqlite:///{tmp_path / 'half.db'}")
    ImapCursor.__table__.create(engine)  # type: ignore[attr-defined]
    yield engine
    engine.dispose()


def test_it_retries_a_message_storage_refused_and_flags_it_once_stored(
    dovecot: Dovecot, folder: str, mail: MailFactory, half_built_database: sa.Engine, caplog: pytest.LogCaptureFixture
):
    sessions = make_sessionmaker(half_built_database)
    deliver(dovecot, folder, mail.raw(subject="Stored on the second try"))

    def storage_failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.exc_info and issubclass(r.exc_info[0], OperationalError)]

    with running(make_intake(sessions, dovecot, folder)):
        assert wait_until(lambda: storage_failures() != [], timeout=DEADLINE)
        assert not is_done(dovecot, folder, "Stored on the second try")
        assert cursor_of(sessions, dovecot, folder).last_uid == 0  # type: ignore[union-attr]
        metadata.create_all(half_built_database)
        assert wait_until(lambda: is_done(dovecot, folder, "Stored on the second try"), timeout=10)

    assert count_tickets(sessions) == 1


def test_it_parses_percent_encoded_credentials_and_imaps():
    url = ImapUrl.parse("imaps://opi%40mt.gov:p%40ss%2Fw%25rd%20x@outlook.office365.com/PDU%20Mail")

    assert (url.user, url.password, url.host, url.port, url.folder, url.tls) == (
        "opi@mt.gov", "p@ss/w%rd x", "outlook.office365.com", 993, "PDU Mail", True,
    )
    assert url.mailbox_key == "opi@mt.gov@outlook.office365.com/PDU Mail"
    plain = ImapUrl.parse("imap://bot:pw@127.0.0.1:1143")
    assert (plain.port, plain.folder, plain.tls) == (1143, "INBOX", False)
    assert ImapUrl.parse("imap://bot:pw@localhost").port == 143


def test_it_keeps_the_password_out_of_text_and_errors():
    url = ImapUrl.parse("imaps://bot:hunter2@imap.example.org/INBOX")

    assert "hunter2" not in f"{url} {url!r} {url.message_ref(7, 3)}"
    with pytest.raises(ValueError) as refused:
        ImapUrl.parse("pop3://bot:hunter2@imap.example.org")
    assert "hunter2" not in str(refused.value)


def test_it_refuses_done_markings_that_would_fight_with_people(sqlite_sessions: sessionmaker[Session]):
    url = ImapUrl.parse("imap://bot:pw@localhost")
    with pytest.raises(ValueError):
        DoneMarking("\\Seen")
    with pytest.raises(ValueError):
        ImapIntake(sqlite_sessions, MailboxPolicy(), url, DoneMarking("", ""))
    with pytest.raises(ValueError):
        DoneMarking("two words")
    assert DoneMarking("\\Flagged").new_mail_search(4) == ["UID", "5:*", "NOT", "FLAGGED"]


def test_it_drops_a_done_flag_the_server_will_not_keep(sqlite_sessions: sessionmaker[Session]):
    no_keywords = {b"PERMANENTFLAGS": (b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Draft")}
    any_keyword = {b"PERMANENTFLAGS": (b"\\Seen", b"\\Deleted", b"\\*")}
    url = ImapUrl.parse("imap://bot:pw@localhost")

    assert not keeps_flag(no_keywords, DONE)
    assert keeps_flag(no_keywords, "\\Flagged")
    assert keeps_flag(any_keyword, DONE)
    assert keeps_flag({}, DONE)  # RFC 3501: no PERMANENTFLAGS means every flag is kept
    flag_only = ImapIntake(sqlite_sessions, MailboxPolicy(), url, DoneMarking(DONE))
    assert flag_only.usable_marking(no_keywords) == DoneMarking("", "")
    assert flag_only.usable_marking(any_keyword) == DoneMarking(DONE)
