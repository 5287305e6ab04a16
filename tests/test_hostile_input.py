"""No input may crash intake or lose the message: Python's own email corpus, hand-made hostile mail and fuzzing.

The rule every test here checks: ``receive`` returns, the message is stored inbound with its exact bytes, and it
is either on a ticket (a request, or an ``unreadable`` ticket with its reason) or a recognised non-request.
Every test runs on SQLite and on PostgreSQL, which refuses NUL characters and over-long strings that SQLite
would quietly keep.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session, selectinload, sessionmaker, undefer

from storage.db import metadata
from storage.enums import Direction, MessageClass, Source, TicketKind
from storage.tickets import Message
from tests import hostile
from workflows.inbox import Receipt, receive
from workflows.nonrequest import classify
from workflows.parsing import parse_message
from workflows.policy import MailboxPolicy

NON_REQUESTS = {MessageClass.AUTO_REPLY, MessageClass.BOUNCE, MessageClass.OWN}
# Reasons that mean code raised and a safety net caught it: the message is kept, but that is a bug to fix.
SAFETY_NET_REASONS = ("intake failed:", "the email parser failed:", "the body could not be read:")


def deliver(sessions: sessionmaker[Session], raw: bytes) -> Receipt:
    return receive(sessions, raw, Source.FILE, MailboxPolicy())


def inbound_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(sa.select(sa.func.count(Message.id)).where(Message.direction == Direction.IN)) or 0


def load(session: Session, pk: int) -> Message:
    options = [undefer(Message.raw), selectinload(Message.ticket), selectinload(Message.attachments)]
    message = session.get(Message, pk, options=options)
    assert message is not None, f"receipt names message {pk}, which is not stored"
    return message


def stored_strings(message: Message) -> list[str]:
    """Every text value intake wrote for ``message``: none may hold a NUL, which PostgreSQL refuses."""
    values = [message.message_id, message.dedupe_key or "", message.in_reply_to, message.subject]
    values += [message.from_addr, message.from_name, message.new_text, message.full_text, message.error]
    values += [*message.references, *message.to_addrs, *message.headers, *map(str, message.headers.values())]
    values += [text for a in message.attachments for text in (a.filename, a.content_type)]
    if (ticket := message.ticket) is not None:
        values += [ticket.subject, ticket.requester, ticket.requester_name, ticket.reason]
    return values


def assert_kept(sessions: sessionmaker[Session], raw: bytes, receipt: Receipt) -> Message:
    """The rule: stored inbound with its exact bytes, and on a ticket or recognised as a non-request."""
    assert not receipt.duplicate, "a first delivery was taken for a duplicate"
    with sessions() as session:
        message = load(session, receipt.message_pk)
        assert message.direction == Direction.IN
        assert message.raw == raw
        assert message.raw_size == len(raw)
        assert message.classification == receipt.classification
        assert not any("\x00" in value for value in stored_strings(message))
        if message.classification in NON_REQUESTS:
            assert message.ticket is None
            return message
        assert message.ticket is not None, f"a {message.classification.value} message has no ticket"
        if message.classification == MessageClass.UNREADABLE:
            assert message.ticket.kind == TicketKind.UNREADABLE
            assert message.ticket.reason.strip()
        else:
            assert message.classification == MessageClass.REQUEST
            # A reply may join an unreadable ticket (the host writing again); a new request opens a readable one.
            assert not receipt.new_ticket or message.ticket.kind != TicketKind.UNREADABLE
        return message


def assert_earlier_copy(sessions: sessionmaker[Session], raw: bytes, receipt: Receipt) -> None:
    """A duplicate is a message stored before under the same Message-ID (or, with none, the same bytes)."""
    assert receipt.duplicate
    with sessions() as session:
        earlier = load(session, receipt.message_pk)
        assert earlier.direction == Direction.IN
        assert earlier.dedupe_key == parse_message(raw).dedupe_key


def assert_no_safety_net(message: Message) -> None:
    assert not message.error.startswith(SAFETY_NET_REASONS), f"a safety net caught a bug: {message.error}"


# --- 1. Python's own email test corpus ---------------------------------------------------------------


def python_email_corpus() -> list[Path]:
    """The msg_*.txt files of CPython's email tests: decades of odd mail that the stdlib must still read."""
    package = pytest.importorskip(
        "test.test_email", reason="this Python build has no test.test_email package, so no email corpus to read"
    )
    files = sorted((Path(package.__file__).parent / "data").glob("msg_*.txt"))
    if not files:
        pytest.skip("this Python build ships test.test_email without its data/msg_*.txt files")
    return files


def test_it_keeps_every_message_of_the_python_email_corpus_once(sessions):
    raws = [path.read_bytes() for path in python_email_corpus()]

    for raw in raws:
        receipt = deliver(sessions, raw)
        if receipt.duplicate:  # several corpus files share one Message-ID
            assert_earlier_copy(sessions, raw, receipt)
        else:
            assert_no_safety_net(assert_kept(sessions, raw, receipt))
    stored = inbound_count(sessions)
    again = [deliver(sessions, raw) for raw in raws]

    assert stored == len({parse_message(raw).dedupe_key for raw in raws})
    assert all(receipt.duplicate for receipt in again)
    assert inbound_count(sessions) == stored


# --- 2. Hand-made hostile messages --------------------------------------------------------------------

REQUEST, UNREADABLE, BOUNCE = MessageClass.REQUEST, MessageClass.UNREADABLE, MessageClass.BOUNCE
HOSTILE: list[tuple[Callable[[], bytes], MessageClass]] = [
    (hostile.missing_boundary, REQUEST),
    (hostile.unterminated_multipart, REQUEST),
    (hostile.bad_content_type_parameters, REQUEST),
    (hostile.content_type_without_subtype, REQUEST),
    (hostile.attachment_content_type_with_nul, REQUEST),
    (hostile.attachment_content_type_enormous, REQUEST),
    (hostile.nested_multipart_300, REQUEST),
    (hostile.nested_multipart_2000, UNREADABLE),
    (hostile.nested_delivery_report, BOUNCE),
    (hostile.unknown_charset, REQUEST),
    (hostile.codec_that_always_fails, REQUEST),
    (hostile.ascii_declared_utf8_bytes, REQUEST),
    (hostile.utf8_declared_latin1_bytes, REQUEST),
    (hostile.latin1_declared_utf8_bytes, REQUEST),
    (hostile.encoded_words_unknown_charset, REQUEST),
    (hostile.nul_in_headers, REQUEST),
    (hostile.nul_in_body, REQUEST),
    (hostile.nul_in_html_body, REQUEST),
    (hostile.nul_in_attachment_filename, REQUEST),
    (hostile.nul_in_encoded_filename, REQUEST),
    (hostile.enormous_subject, REQUEST),
    (hostile.enormous_references, REQUEST),
    (hostile.many_received_headers, REQUEST),
    (hostile.enormous_attachment_filename, REQUEST),
    (hostile.empty_message, UNREADABLE),
    (hostile.only_whitespace, UNREADABLE),
    (hostile.headers_only, REQUEST),
    (hostile.binary_garbage, UNREADABLE),
    (hostile.line_noise_with_colons, UNREADABLE),
    (hostile.bad_base64_body, REQUEST),
    (hostile.bad_quoted_printable_body, REQUEST),
    (hostile.bad_uuencode_body, REQUEST),
    (hostile.zip_attachment, REQUEST),
    (hostile.html_with_script_and_style, REQUEST),
    (hostile.rfc822_attachment_that_is_garbage, REQUEST),
    (hostile.duplicated_message_id, REQUEST),
    (hostile.enormous_message_id, REQUEST),
    (hostile.invalid_dates, REQUEST),
    (hostile.date_far_in_the_future, REQUEST),
    (hostile.sender_address_too_long, REQUEST),
    (hostile.longest_valid_sender, REQUEST),
    (hostile.long_subject, REQUEST),
    (hostile.bounce_with_enormous_failed_recipient, BOUNCE),
    (hostile.delivery_report_with_enormous_recipient, BOUNCE),
    (hostile.line_endings_of_every_kind, REQUEST),
    (hostile.folded_first_line, REQUEST),
]


# Crashes whose fix belongs outside parsing, each in a column only PostgreSQL holds to its declared length.
# Strict, so the test fails as soon as the fix lands and the entry can go.
@pytest.mark.parametrize(("build", "expected"), HOSTILE, ids=[build.__name__ for build, _ in HOSTILE])
def test_it_keeps_hostile_mail_and_classifies_it_sensibly(sessions, build, expected):
    raw = build()

    receipt = deliver(sessions, raw)

    message = assert_kept(sessions, raw, receipt)
    assert_no_safety_net(message)
    assert receipt.classification == expected, message.error
    assert deliver(sessions, raw).duplicate
    assert inbound_count(sessions) == 1


def test_it_keeps_mail_whose_from_header_does_not_parse(sessions):
    for number, value in enumerate(hostile.UNPARSEABLE_FROMS):
        raw = hostile.unparseable_from(value, message_id=b"<from-%d@example.org>" % number)

        receipt = deliver(sessions, raw)

        assert_no_safety_net(assert_kept(sessions, raw, receipt))
        assert receipt.classification == MessageClass.REQUEST, value


@pytest.mark.parametrize(
    ("value", "sender"),
    [
        (b'"unterminated <jdoe@gfps.k12.mt.us>', "jdoe@gfps.k12.mt.us"),
        (b'"a\\" <jdoe@gfps.k12.mt.us>', "jdoe@gfps.k12.mt.us"),
        (b"<<<@@@>>>", ""),
        (b"a@b@c@d", ""),
        (b"x" * 400 + b"@example.org", ""),  # longer than RFC 5321 allows: nobody could be written back to
    ],
)
def test_it_reads_only_a_real_address_as_the_sender(value, sender):
    assert parse_message(hostile.unparseable_from(value)).from_addr == sender


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (hostile.empty_message, "empty message"),
        (hostile.only_whitespace, "empty message"),
        (hostile.binary_garbage, "not an email"),
        (hostile.line_noise_with_colons, "not an email"),
    ],
)
def test_it_says_why_garbage_is_unreadable(build, reason):
    assert reason in parse_message(build()).unreadable


def test_it_still_names_the_sender_of_mail_nested_too_deeply_to_read():
    parsed = parse_message(hostile.nested_multipart_2000())

    assert parsed.unreadable
    assert parsed.from_addr == "jdoe@gfps.k12.mt.us"
    assert parsed.subject == "Cancelled workshop"


def test_it_reads_the_innermost_text_of_deeply_nested_mail():
    assert parse_message(hostile.nested_multipart_300()).new_text == "The innermost text."


@pytest.mark.parametrize(
    "build",
    [hostile.ascii_declared_utf8_bytes, hostile.utf8_declared_latin1_bytes, hostile.latin1_declared_utf8_bytes],
)
def test_it_reads_text_whose_charset_lies(build):
    assert parse_message(build()).new_text == f"Hello from {hostile.JOSE}"


def test_it_reads_text_in_a_charset_python_cannot_decode():
    assert parse_message(hostile.codec_that_always_fails()).new_text == "Please remove our workshop."


def test_it_drops_script_and_style_from_html():
    parsed = parse_message(hostile.html_with_script_and_style())

    assert parsed.new_text == "Please remove our workshop."
    for hidden in (hostile.SCRIPT_TEXT, hostile.STYLE_TEXT):
        assert hidden not in parsed.full_text


def test_it_removes_nul_from_every_field():
    for build in (hostile.nul_in_headers, hostile.nul_in_body, hostile.nul_in_html_body):
        parsed = parse_message(build())
        texts = [parsed.subject, parsed.from_addr, parsed.from_name, parsed.message_id, parsed.full_text]
        assert not any("\x00" in text for text in texts + parsed.references + list(parsed.headers.values()))
    assert parse_message(hostile.nul_in_body()).new_text == "Please remove our workshop."


def test_it_describes_a_zip_attachment_without_opening_it():
    (attachment,) = parse_message(hostile.zip_attachment()).attachments

    assert (attachment.filename, attachment.content_type) == ("roster.zip", "application/zip")
    assert attachment.size > 0


def test_it_cuts_attachment_names_and_types_to_what_the_columns_hold():
    (long_name,) = parse_message(hostile.enormous_attachment_filename()).attachments
    (long_type,) = parse_message(hostile.attachment_content_type_enormous()).attachments
    (nul_type,) = parse_message(hostile.attachment_content_type_with_nul()).attachments

    assert len(long_name.filename) <= 500
    assert len(long_type.content_type) <= 200
    assert "\x00" not in nul_type.content_type


def test_it_keeps_the_newest_references_of_an_enormous_references_header():
    parsed = parse_message(hostile.enormous_references())

    assert parsed.references[-1] == "ref59999@example.org"
    assert parsed.in_reply_to == "ref0@example.org"


def test_it_dedupes_an_enormous_message_id_by_a_stable_digest():
    first, second = parse_message(hostile.enormous_message_id()), parse_message(hostile.enormous_message_id())

    assert first.message_id == second.message_id
    assert len(first.message_id) < 100


@pytest.mark.parametrize("build", [hostile.enormous_subject, hostile.enormous_references])
def test_it_reads_enormous_headers_quickly(build):
    raw = build()
    started = time.perf_counter()

    parsed = parse_message(raw)

    # Unbounded, the stdlib header parser needs 20 s and more for these; bounded, a few milliseconds.
    assert time.perf_counter() - started < 5
    assert parsed.subject.startswith(("ab ab", "Cancelled workshop"))
    assert len(parsed.subject) <= 998


def test_it_ignores_dates_it_cannot_hold():
    assert parse_message(hostile.invalid_dates()).date is None
    assert parse_message(hostile.date_far_in_the_future()).date is None


def test_it_finds_the_failed_address_of_a_report_buried_deep():
    verdict = classify(parse_message(hostile.nested_delivery_report()), MailboxPolicy().addresses)

    assert verdict.classification == MessageClass.BOUNCE
    assert verdict.failed_addresses == ["gone@example.org"]


def test_it_suppresses_only_addresses_a_mailbox_could_have():
    verdict = classify(parse_message(hostile.bounce_with_enormous_failed_recipient()), MailboxPolicy().addresses)

    assert verdict.classification == MessageClass.BOUNCE
    assert verdict.failed_addresses == ["ok@example.org"]


# Separate tests because they are the ones that cost memory: a 25 MB attachment, about 35 MB on the wire.
@pytest.fixture(scope="module")
def huge_raw() -> bytes:
    return hostile.huge_attachment()


def test_it_keeps_a_25_megabyte_attachment(sessions, huge_raw):
    receipt = deliver(sessions, huge_raw)

    message = assert_kept(sessions, huge_raw, receipt)
    assert [a.size for a in message.attachments] == [25 * 1024 * 1024]


def test_it_reads_a_25_megabyte_attachment_in_bounded_memory(huge_raw):
    tracemalloc.start()
    try:
        parsed = parse_message(huge_raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert parsed.new_text == "Please see the attached file."
    # The stdlib parser alone peaks near 8 times the message (it holds every line as a str); reading the
    # message must add no whole copy of its own on top of that.
    assert peak < 10 * len(huge_raw), f"reading peaked at {peak / len(huge_raw):.1f} times the message size"


# --- 3. Generated MIME ---------------------------------------------------------------------------------


def forget_everything(engine: sa.Engine) -> None:
    """Delete every row: cheap for the few rows one example leaves, where TRUNCATE costs half a second."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=hostile.hostile_messages())
def test_it_keeps_whatever_mime_hypothesis_builds(engine, sessions, raw):
    # A fresh database per example, so no example threads onto another's ticket and every run replays alike.
    forget_everything(engine)

    receipt = deliver(sessions, raw)

    assert_no_safety_net(assert_kept(sessions, raw, receipt))
