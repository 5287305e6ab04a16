"""Import PDUPS CSV exports of hosts, users and events into the registry, upserting each row by its id."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from itertools import islice
from typing import Any

import phonenumbers
import sqlalchemy as sa
from dateutil.parser import isoparse
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from sqlalchemy.orm import Session, sessionmaker

from storage.base import Base
from storage.enums import EventStatus, HostKind
from storage.registry import Event, Host, User
from storage.tickets import AuditEntry

BATCH_SIZE = 500
AUDIT_ACTION = "registry_import"
PHONE_REGION = "US"
NANP_COUNTRY_CODE = 1  # numbers in the US and Canada are written without a country code
MAX_COUNT = 2**31 - 1  # the largest value PostgreSQL's integer column holds
# What Event.hours (a NUMERIC(precision, scale) column) can hold exactly.
HOURS_PLACES = Event.__table__.c.hours.type.scale
HOURS_CEILING = Decimal(10) ** (Event.__table__.c.hours.type.precision - HOURS_PLACES)
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

Parser = Callable[[str], Any]
Progress = Callable[[int], None]


class FileRejected(ValueError):
    """The file as a whole cannot be imported: it is not text, or its header lacks a column."""


class RowRejected(ValueError):
    """One row cannot be imported. The message says why, for the person who fixes the file."""


# --- values: one parser per kind of value; each takes stripped text and raises ValueError with the reason


def parse_text(value: str) -> str:
    return value


def parse_word(value: str) -> str:
    """A free-form status such as ``active``, compared and stored lower-cased."""
    return value.lower()


def parse_email(value: str) -> str:
    """An address checked for syntax only (no DNS), lower-cased because senders are matched on it."""
    if not value:
        return ""
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not a valid email address: {exc}") from exc
    return checked.normalized.lower()


_PHONE_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "has an unknown country code",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}
_PHONE_LENGTH_PROBLEMS = {
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "has no area code",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
}


def parse_phone(value: str) -> str:
    """A valid phone number in the readable form staff dial from, such as ``(406) 555-0142``."""
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, PHONE_REGION)
    except NumberParseException as exc:
        problem = _PHONE_PARSE_PROBLEMS.get(exc.error_type, "is not a phone number")
        raise ValueError(f"{value!r} {problem}") from exc
    if not phonenumbers.is_valid_number(number):
        reason = phonenumbers.is_possible_number_with_reason(number)
        problem = _PHONE_LENGTH_PROBLEMS.get(reason, "is not a valid number (check the area code and exchange)")
        raise ValueError(f"{value!r} {problem}")
    style = PhoneNumberFormat.NATIONAL if number.country_code == NANP_COUNTRY_CODE else PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, style)


US_DATE = re.compile(r"(\d{1,2}/\d{1,2}/\d{4})(?: 0?0:00(?::00)?)?")


def parse_date(value: str) -> dt.date:
    """An ISO 8601 date, or the US month/day/year spreadsheets show. A midnight time is tolerated."""
    try:
        # Only the full US form is read as month first; anything else must be ISO, never guessed.
        us_date = US_DATE.fullmatch(value)
        moment = dt.datetime.strptime(us_date.group(1), "%m/%d/%Y") if us_date else isoparse(value)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD or MM/DD/YYYY)") from exc
    if moment.time() != dt.time():
        raise ValueError(f"{value!r} has a time of day; give only the date (YYYY-MM-DD)")
    return moment.date()


def parse_hours(value: str) -> Decimal:
    """Hours of instruction (1 hour = 1 PDU), kept exactly: never rounded, so a PDU is never made up."""
    try:
        hours = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number of hours") from exc
    if not hours.is_finite():
        raise ValueError(f"{value!r} is not a number of hours")
    if hours < 0:
        raise ValueError(f"{value} is negative")
    if hours >= HOURS_CEILING:
        raise ValueError(f"{value} is more than the registry holds")
    if hours != round(hours, HOURS_PLACES):
        raise ValueError(f"{value} has more than {HOURS_PLACES} decimal places")
    return hours


def parse_count(value: str) -> int | None:
    """The certificates issued; blank means the host has not reported yet, which is not the same as 0."""
    if not value:
        return None
    try:
        count = int(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a whole number") from exc
    if count < 0:
        raise ValueError(f"{value} is negative")
    if count > MAX_COUNT:
        raise ValueError(f"{value} is too large")
    return count


def parse_bool(value: str) -> bool:
    try:
        return BOOLEANS[value.lower()]
    except KeyError as exc:
        raise ValueError(f"{value!r} is not one of: true, false, yes, no, 1, 0") from exc


def parse_member(vocabulary: type[enum.Enum], value: str) -> Any:
    try:
        return vocabulary(value.lower())
    except ValueError as exc:
        choices = ", ".join(str(member.value) for member in vocabulary)
        raise ValueError(f"{value!r} is not one of: {choices}") from exc


def parse_host_kind(value: str) -> HostKind:
    return parse_member(HostKind, value)


def parse_event_status(value: str) -> EventStatus:
    return parse_member(EventStatus, value)


def parse_categories(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


# --- what each file holds: its columns, its key, and the rules between columns


@dataclass(frozen=True)
class Column:
    """One CSV column, named as the model attribute it fills.

    A required column must be in the header. An optional one may be left out of the file: its value is
    then untouched on update and the model's default on insert. ``aliases`` are the other headings an
    export may give it, written as ``normalize_header`` leaves them.
    """

    name: str
    parse: Parser = parse_text
    allow_blank: bool = True
    required: bool = False
    aliases: tuple[str, ...] = ()

    def answers_to(self, heading: str) -> bool:
        return heading == self.name or heading in self.aliases


def no_cross_check(values: dict[str, Any]) -> list[str]:
    return []


def check_event_dates(values: dict[str, Any]) -> list[str]:
    if values["end_date"] < values["start_date"]:
        return [f"end_date {values['end_date']} is before start_date {values['start_date']}"]
    return []


@dataclass(frozen=True)
class RecordKind:
    """A kind of PDUPS export. Headings nothing answers to are reported as ignored, so a misspelt one shows."""

    name: str
    model: type[Base]
    key: str
    columns: tuple[Column, ...]
    case_insensitive_key: bool = False
    needs_host: bool = False  # rows name a host that must already be in the registry
    check: Callable[[dict[str, Any]], list[str]] = no_cross_check

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def required_names(self) -> list[str]:
        return [column.name for column in self.columns if column.required]

    def column_for(self, heading: str) -> Column | None:
        return next((column for column in self.columns if column.answers_to(heading)), None)

    def match(self, key: str) -> str:
        """How a key is compared with stored ones; lower-casing agrees with SQL ``lower()``."""
        return key.lower() if self.case_insensitive_key else key

    def key_expression(self) -> Any:
        key = getattr(self.model, self.key)
        return sa.func.lower(key) if self.case_insensitive_key else key


HOSTS = RecordKind(
    name="hosts",
    model=Host,
    key="host_id",
    columns=(
        Column("host_id", allow_blank=False, required=True, aliases=("id", "provider_id")),
        Column("name", allow_blank=False, required=True, aliases=("provider_name", "host_name", "organization")),
        Column("kind", parse_host_kind, allow_blank=False, aliases=("host_kind", "provider_type", "type")),
        Column("phone", parse_phone, aliases=("phone_number", "host_phone")),
        Column("address", aliases=("mailing_address",)),
        Column("contact_name", aliases=("account_manager", "contact")),
        Column("contact_email", parse_email, aliases=("account_manager_email",)),
        Column("contact_phone", parse_phone, aliases=("account_manager_phone",)),
        Column("status", parse_word, allow_blank=False),
    ),
)

USERS = RecordKind(
    name="users",
    model=User,
    key="username",
    # PDUPS logins are case-insensitive: JDoe and jdoe are one person.
    case_insensitive_key=True,
    needs_host=True,
    columns=(
        Column("username", allow_blank=False, required=True, aliases=("user_name", "login")),
        Column("full_name", aliases=("name",)),
        Column("email", parse_email, aliases=("email_address",)),
        Column("phone", parse_phone, aliases=("phone_number",)),
        Column("host_id", allow_blank=False, required=True, aliases=("provider_id",)),
        Column("status", parse_word, allow_blank=False),
    ),
)

EVENTS = RecordKind(
    name="events",
    model=Event,
    key="event_id",
    needs_host=True,
    check=check_event_dates,
    columns=(
        Column("event_id", allow_blank=False, required=True, aliases=("id",)),
        Column("host_id", allow_blank=False, required=True, aliases=("provider_id",)),
        Column("title", allow_blank=False, required=True, aliases=("event_title", "title_of_activity")),
        Column("instructor", aliases=("presenter",)),
        Column("description"),
        Column("categories", parse_categories, aliases=("category",)),
        Column("start_date", parse_date, allow_blank=False, required=True, aliases=("beginning_date", "start")),
        Column("end_date", parse_date, allow_blank=False, required=True, aliases=("ending_date", "end")),
        Column("online", parse_bool, allow_blank=False),
        Column("city"),
        Column("zip", aliases=("zip_code", "postal_code")),
        Column("state"),
        Column("hours", parse_hours, allow_blank=False, required=True, aliases=("pdus", "pdu_hours")),
        Column("certificates_issued", parse_count, aliases=("certificates", "certificate_count")),
        Column("status", parse_event_status, allow_blank=False),
    ),
)


# --- reading the file


@dataclass(frozen=True)
class Record:
    """One data row as the CSV module read it, with the line it starts on (1 is the header)."""

    line: int
    fields: list[str]
    error: str = ""  # set when the CSV module could not read the row


@dataclass(frozen=True)
class Header:
    positions: dict[str, int]  # column name -> index in each row
    width: int
    ignored: list[str]


def decode_export(data: bytes) -> str:
    """The text of an export: UTF-8 with or without the BOM Excel writes, else Windows-1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return decode_windows(data)


def decode_windows(data: bytes) -> str:
    # Excel's plain "CSV" format on Windows saves in the ANSI code page, not UTF-8.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise FileRejected("the file is neither UTF-8 nor Windows-1252 text") from exc


def text_lines(text: str) -> io.StringIO:
    """Lines for the CSV module, which needs line endings untranslated to keep newlines inside quotes."""
    return io.StringIO(text, newline="")


def normalize_header(name: str) -> str:
    """``Provider Name``, ``provider-name`` and ``provider_name`` are one heading."""
    return re.sub(r"[\s\-]+", "_", name.strip().lstrip("\ufeff").strip().lower())


def read_header(kind: RecordKind, names: list[str]) -> Header:
    """Where each column is, by heading or alias; FileRejected when a required one is missing or one repeats."""
    positions: dict[str, int] = {}
    ignored: list[str] = []
    for index, raw in enumerate(names):
        column = kind.column_for(normalize_header(raw))
        if column is None:
            ignored.append(raw.strip())
        elif column.name in positions:
            raise FileRejected(f"the column {column.name} appears more than once")
        else:
            positions[column.name] = index
    missing = [name for name in kind.required_names if name not in positions]
    if missing:
        raise FileRejected(
            f"missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
            f"(a {kind.name} file needs {', '.join(kind.required_names)}; "
            f"it may also have {', '.join(n for n in kind.column_names if n not in kind.required_names)})"
        )
    return Header(positions, len(names), [name for name in ignored if name])


def read_records(reader: Any) -> Iterator[Record]:
    """The data rows after the header, each with the line it starts on; blank lines are skipped."""
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(line, [], error=f"unreadable CSV: {exc}")
            continue
        if any(value.strip() for value in fields):
            yield Record(line, fields)


# Tried in this order: an events file also has host_id and a users file has a name, so the kinds whose
# required columns include another's are tried first.
KINDS_BY_SPECIFICITY = (EVENTS, USERS, HOSTS)
IMPORT_ORDER = (HOSTS, USERS, EVENTS)  # users and events must name a host already in the registry


def kind_of_export(text: str) -> RecordKind:
    """Which export this is, told from its header; FileRejected when it is none of them."""
    headings = [normalize_header(name) for name in next(csv.reader(text_lines(text)), [])]
    for kind in KINDS_BY_SPECIFICITY:
        present = {column.name for heading in headings if (column := kind.column_for(heading))}
        if present.issuperset(kind.required_names):
            return kind
    raise FileRejected(
        "its columns are not those of a hosts, users or events export (it needs "
        + "; ".join(f"{', '.join(kind.required_names)} for {kind.name}" for kind in IMPORT_ORDER)
        + ")"
    )


def count_rows(kind: RecordKind, text: str) -> int:
    """The data rows of an export, after checking its header, so a bad file fails before any work starts."""
    reader = csv.reader(text_lines(text))
    read_header(kind, next(reader, []))
    return sum(1 for _ in read_records(reader))


# --- checking a row


@cache
def text_limit(model: type[Base], name: str) -> int | None:
    return getattr(model.__table__.c[name].type, "length", None)


def read_value(model: type[Base], column: Column, raw: str) -> Any:
    if "\x00" in raw:
        # PostgreSQL cannot store NUL in text, and it is never meant: the file is damaged there.
        raise ValueError("contains a NUL character")
    if not raw and not column.allow_blank:
        raise ValueError("must not be blank")
    value = column.parse(raw)
    limit = text_limit(model, column.name)
    if isinstance(value, str) and limit is not None and len(value) > limit:
        raise ValueError(f"is longer than {limit} characters")
    return value


def check_width(header: Header, fields: list[str]) -> None:
    extra = fields[header.width :]
    if len(fields) < header.width or any(value.strip() for value in extra):
        raise RowRejected(
            f"has {len(fields)} fields but the header has {header.width} (is a comma inside a value not quoted?)"
        )


def parse_record(kind: RecordKind, header: Header, record: Record) -> dict[str, Any]:
    """The row's values by model attribute, or RowRejected listing every problem found in it."""
    if record.error:
        raise RowRejected(record.error)
    check_width(header, record.fields)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for column in kind.columns:
        if column.name not in header.positions:
            continue  # left out of the file: the stored value (or the model's default) stands
        try:
            values[column.name] = read_value(kind.model, column, record.fields[header.positions[column.name]].strip())
        except ValueError as exc:
            problems.append(f"{column.name}: {exc}")
    problems = problems or kind.check(values)
    if problems:
        raise RowRejected("; ".join(problems))
    return values


# --- upserting


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class BatchOutcome:
    added: list[Row] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged + len(self.rejected)

    @property
    def all_rejected(self) -> bool:
        return bool(self.rejected) and len(self.rejected) == self.total

    def merge(self, outcome: BatchOutcome) -> None:
        self.added += len(outcome.added)
        self.updated += outcome.updated
        self.unchanged += outcome.unchanged
        self.rejected.extend(outcome.rejected)

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
        }


def actor_for(filename: str) -> str:
    """Who the audit log says made an import's changes: the file they came from."""
    return f"import:{filename}"[: AuditEntry.__table__.c.actor.type.length]


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def jsonable(value: Any) -> Any:
    """A value as the audit log's JSON columns can hold it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    return value


def screen_batch(
    kind: RecordKind, header: Header, batch: list[Record], seen: dict[str, int], outcome: BatchOutcome
) -> list[Row]:
    """The batch's rows that pass every check that needs no database; the rest go to ``outcome.rejected``."""
    rows: list[Row] = []
    for record in batch:
        try:
            values = parse_record(kind, header, record)
        except RowRejected as exc:
            outcome.rejected.append(Rejection(record.line, str(exc)))
            continue
        match = kind.match(values[kind.key])
        if match in seen:
            reason = f"{kind.key} {values[kind.key]} appears again (first on line {seen[match]})"
            outcome.rejected.append(Rejection(record.line, reason))
            continue
        seen[match] = record.line
        rows.append(Row(record.line, values))
    return rows


def keep_known_hosts(session: Session, kind: RecordKind, rows: list[Row], outcome: BatchOutcome) -> list[Row]:
    """Rows whose host is in the registry, found with one query; the others are rejected."""
    if not kind.needs_host:
        return rows
    wanted = {row.values["host_id"] for row in rows}
    known = set(session.scalars(sa.select(Host.host_id).where(Host.host_id.in_(wanted)))) if wanted else set()
    kept: list[Row] = []
    for row in rows:
        if row.values["host_id"] in known:
            kept.append(row)
        else:
            outcome.rejected.append(Rejection(row.line, f"host_id: no host {row.values['host_id']} in the registry"))
    return kept


def fetch_existing(session: Session, kind: RecordKind, rows: list[Row]) -> dict[str, Any]:
    """The stored rows for this batch's keys, found with one query, by matched key and by exact key."""
    if not rows:
        return {}
    matches = {kind.match(row.values[kind.key]) for row in rows}
    found = session.scalars(sa.select(kind.model).where(kind.key_expression().in_(matches))).all()
    by_match = {kind.match(getattr(record, kind.key)): record for record in found}
    # Should two stored usernames differ only in case, the one spelt exactly as in the file wins.
    return by_match | {getattr(record, kind.key): record for record in found}


def changed_fields(kind: RecordKind, record: Any, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field -> (stored, new) for every value that differs. The key is never changed: it is how rows match."""
    return {
        name: (getattr(record, name), value)
        for name, value in values.items()
        if name != kind.key and getattr(record, name) != value
    }


def update_entry(kind: RecordKind, row: Row, key: str, changes: dict[str, tuple[Any, Any]], actor: str) -> AuditEntry:
    return AuditEntry(
        ticket_id=None,
        actor=actor,
        action=AUDIT_ACTION,
        before={name: jsonable(old) for name, (old, _) in changes.items()},
        after={name: jsonable(new) for name, (_, new) in changes.items()},
        detail=f"updated {kind.name} {key} from line {row.line}",
    )


def batch_entry(kind: RecordKind, batch: list[Record], outcome: BatchOutcome, actor: str) -> AuditEntry:
    lines = f"{batch[0].line}-{batch[-1].line}"
    counts = {
        "added": len(outcome.added),
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "rejected": len(outcome.rejected),
    }
    added_ids = [row.values[kind.key] for row in outcome.added]
    return AuditEntry(
        ticket_id=None,
        actor=actor,
        action=AUDIT_ACTION,
        before={},
        after={"kind": kind.name, "lines": lines, **counts, "added_ids": added_ids},
        detail=f"{kind.name} lines {lines}: " + ", ".join(f"{n} {label}" for label, n in counts.items()),
    )


def upsert_rows(
    session: Session, kind: RecordKind, rows: list[Row], existing: dict[str, Any], actor: str, outcome: BatchOutcome
) -> None:
    """Insert new rows in one statement, and change stored ones (``existing``) only where a value differs."""
    for row in rows:
        key = row.values[kind.key]
        record = existing.get(key) or existing.get(kind.match(key))
        if record is None:
            outcome.added.append(row)
            continue
        changes = changed_fields(kind, record, row.values)
        if not changes:
            outcome.unchanged += 1
            continue
        for name, (_, new) in changes.items():
            setattr(record, name, new)
        session.add(update_entry(kind, row, getattr(record, kind.key), changes, actor))
        outcome.updated += 1
    if outcome.added:
        # A Core insert sends the batch as one multi-row statement. The ORM's bulk insert starts a new
        # statement wherever the next row has a None (a blank count), hundreds per batch.
        session.execute(sa.insert(kind.model.__table__), [row.values for row in outcome.added])


@contextmanager
def planned_for_these_values(session: Session) -> Iterator[None]:
    """Have PostgreSQL plan the lookups inside the block for the ids they are given.

    psycopg prepares a statement once it has run five times, and PostgreSQL then moves to a generic
    plan, which compares each row with the 500 ids of ``IN (...)`` one by one instead of hashing them:
    on a table of 40,000 events every batch took a second instead of 10 ms. The writes after the block
    keep their cached plans, which are right for them and spare planning 500-row inserts again.
    """
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
    yield
    if postgresql:
        session.execute(sa.text("SET LOCAL plan_cache_mode TO DEFAULT"))


def import_batch(
    sessions: sessionmaker[Session], kind: RecordKind, header: Header, batch: list[Record],
    seen: dict[str, int], actor: str,
) -> BatchOutcome:
    """Check and upsert one batch in one transaction; one audit entry sums it up when anything changed."""
    outcome = BatchOutcome()
    rows = screen_batch(kind, header, batch, seen, outcome)
    with sessions.begin() as session:
        with planned_for_these_values(session):
            rows = keep_known_hosts(session, kind, rows, outcome)
            existing = fetch_existing(session, kind, rows)
        upsert_rows(session, kind, rows, existing, actor, outcome)
        if outcome.added or outcome.updated:
            session.add(batch_entry(kind, batch, outcome, actor))
    return outcome


def import_records(
    sessions: sessionmaker[Session],
    kind: RecordKind,
    lines: Iterable[str],
    actor: str,
    on_progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Import the CSV text in ``lines`` (header first), committing every ``batch_size`` rows.

    A bad row is rejected with its line number and never stops the rest. FileRejected is raised, before
    anything is written, when the header lacks a column. ``on_progress`` gets the rows done after each batch.
    """
    reader = csv.reader(lines)
    header = read_header(kind, next(reader, []))
    result = ImportResult(ignored_columns=header.ignored)
    seen: dict[str, int] = {}  # matched key -> line, to catch an id given twice in one file
    for batch in batched(read_records(reader), batch_size):
        result.merge(import_batch(sessions, kind, header, batch, seen, actor))
        if on_progress is not None:
            on_progress(result.total)
    result.rejected.sort(key=lambda rejection: rejection.line)
    return result
