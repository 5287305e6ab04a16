"""Turn the raw bytes of one email into the facts the workflows need, whatever state the bytes are in.

Parsing never raises for bad input: a message that cannot be read comes back with ``unreadable`` set to
the reason, so intake can keep it as an ``unreadable`` ticket for staff instead of dropping it.
"""

from __future__ import annotations

import datetime as dt
import email
import email.parser
import email.policy
import email.utils
import functools
import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import html2text
from mailparser_reply import EmailMessage

logger = logging.getLogger(__name__)

# Headers the non-request rules and threading look at; everything else stays in the raw bytes.
KEPT_HEADERS = (
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "precedence",
    "list-id",
    "return-path",
    "x-failed-recipients",
    "x-loop",
    "authentication-results",
    "content-type",
    "reply-to",
)
MAX_HEADER_CHARS = 2000  # per kept header; enormous headers are cut, never stored whole twice
# The stdlib header parser slows with the square of a header's length (a 1 MB Subject of short words takes
# about 20 s), so it is only ever given this much of one header; the rest stays in the raw bytes.
MAX_PARSED_HEADER_CHARS = 16_000
MAX_PARTS = 500  # hundreds of nested parts are read up to here, then the rest is left in the raw bytes
MAX_ADDRESS_CHARS = 254  # RFC 5321 section 4.5.3.1.3: a path is at most 256 octets, brackets included
# An addr-spec (RFC 5322 section 3.4.1) without comments or folding: what we can write back to. Display
# names, brackets and the debris of a header the parsers half-understood do not match.
_ATOM = r'[^\s\x00-\x1f\x7f"<>()\[\],;:@\\]+'
ADDRESS = re.compile(rf'(?:"[^"\\\x00-\x1f\x7f]+"|{_ATOM})@{_ATOM}')
ANGLE_ADDRESS = re.compile(rf"<({ADDRESS.pattern})>")
MAX_CONTROL_SHARE = 0.05  # written text has almost no control characters; binary read as text has ~12%
WESTERN_CHARSETS = {"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252", ""}



class BoundedPolicy(email.policy.EmailPolicy):
    """The default policy, except that the header parser sees at most ``MAX_PARSED_HEADER_CHARS`` of a header."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            return _parsed_header(self, name, bounded_header(name, value))
        return super().header_fetch_parse(name, value)


@functools.lru_cache(maxsize=4096)
def _parsed_header(policy: BoundedPolicy, name: str, value: str) -> Any:
    """Header objects are immutable, and the email package parses a header again on every access
    (a part's Content-Type several times while walking), so each distinct header is parsed once."""
    return email.policy.EmailPolicy.header_fetch_parse(policy, name, value)


def bounded_header(name: str, value: str) -> str:
    """The start of an enormous header, or for References its end, where the newest ids are (RFC 5322 3.6.4)."""
    if len(value) <= MAX_PARSED_HEADER_CHARS:
        return value
    if name.lower() != "references":
        return value[:MAX_PARSED_HEADER_CHARS]
    tail = value[-MAX_PARSED_HEADER_CHARS:]
    return tail[tail.find("<"):] if "<" in tail else tail  # drop the id the cut went through


READING_POLICY = BoundedPolicy()


@dataclass
class AttachmentInfo:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass
class ParsedMail:
    """What one email says. ``new_text`` is only what the sender wrote this time."""

    raw_sha256: str
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_addr: str = ""
    from_name: str = ""
    to_addrs: list[str] = field(default_factory=list)
    date: dt.datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)
    full_text: str = ""
    new_text: str = ""
    signature: str = ""
    quoted: str = ""
    forwarded: str = ""  # the text of a forwarded message, without its header block
    forwarded_from: tuple[str, str] = ("", "")  # (name, address) of the forwarded message's writer
    html_only: bool = False
    attachments: list[AttachmentInfo] = field(default_factory=list)
    unreadable: str = ""  # the reason, when the message could not be read
    message: Message | None = field(default=None, repr=False)

    @property
    def dedupe_key(self) -> str:
        """The Message-ID when there is one, else a hash of the exact bytes."""
        return f"mid:{self.message_id}" if self.message_id else f"sha256:{self.raw_sha256}"


def clean(text: str) -> str:
    """Remove what no database column may hold (NUL) and stray surrogates from broken encodings."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def normalize_message_id(value: str) -> str:
    value = clean(value).strip().strip("<>").strip()
    if len(value) > 900:  # an absurd Message-ID still dedupes, by a stable digest of it
        value = "sha256-" + hashlib.sha256(value.encode()).hexdigest()
    return value


def parse_message(raw: bytes) -> ParsedMail:
    """Read ``raw`` as an email. Never raises for bad input; see ``ParsedMail.unreadable``."""
    parsed = ParsedMail(raw_sha256=hashlib.sha256(raw).hexdigest())
    if not raw.strip():
        parsed.unreadable = "empty message"
        return parsed
    try:
        message = email.message_from_bytes(raw, policy=READING_POLICY)
    except RecursionError:
        # The stdlib parser recurses once per nested part. The headers alone still say who wrote and what about.
        logger.warning("message %s nests its parts too deeply to parse", parsed.raw_sha256)
        message = email.parser.BytesHeaderParser(policy=READING_POLICY).parsebytes(raw)
        parsed.unreadable = "the message nests its parts too deeply to read"
    except Exception as exc:  # the stdlib parser is lenient; anything it raises is itself a finding
        logger.exception("email parser failed")
        parsed.unreadable = f"the email parser failed: {type(exc).__name__}: {exc}"
        return parsed
    parsed.message = message
    _read_headers(message, parsed)
    if parsed.unreadable:
        return parsed
    try:
        _read_body(message, parsed)
    except Exception as exc:
        logger.exception("reading the body failed")
        parsed.unreadable = f"the body could not be read: {type(exc).__name__}: {exc}"
    if not parsed.unreadable and not _looks_like_email(message, parsed):
        parsed.unreadable = "no sender, no subject and no readable text: not an email"
    return parsed


def walk_parts(message: Message, limit: int = MAX_PARTS) -> Iterator[Message]:
    """The parts of ``message`` in ``Message.walk`` order, at most ``limit``, without recursing into nesting."""
    stack = [message]
    for _ in range(limit):
        if not stack:
            return
        part = stack.pop()
        yield part
        if part.is_multipart():
            stack.extend(reversed(part.get_payload()))


def header(message: Message, name: str) -> str:
    """One header as text. A header the strict policy cannot parse falls back to its raw form."""
    try:
        value = message.get(name)
        text = "" if value is None else str(value)
    except Exception:
        text = next(iter(_raw_values(message, name)), "")
    return bounded_header(name, clean(text))


def _raw_values(message: Message, name: str) -> list[str]:
    """A header's values as they arrived, for when the header parser refuses them."""
    return [bounded_header(name, str(v)) for k, v in message.raw_items() if k.lower() == name.lower()]


def _addresses(message: Message, name: str) -> list[tuple[str, str]]:
    try:
        values = [str(v) for v in message.get_all(name, [])]
    except Exception:
        values = _raw_values(message, name)
    values = [clean(v) for v in values]
    pairs = [(n.strip(), a.strip().lower()) for n, a in email.utils.getaddresses(values)]
    found = [(n, a) for n, a in pairs if is_address(a)]
    if not found:  # a header no parser could split may still hold one <address> a person would read
        found = [("", a.lower()) for v in values for a in ANGLE_ADDRESS.findall(v) if is_address(a)]
    return found


def is_address(text: str) -> bool:
    """True for one bare address we could write to, within RFC 5321's length limit."""
    return len(text) <= MAX_ADDRESS_CHARS and ADDRESS.fullmatch(text) is not None


def _read_headers(message: Message, parsed: ParsedMail) -> None:
    raw = RawHeaders(message)
    parsed.message_id = normalize_message_id(raw.message_id())
    parsed.in_reply_to = normalize_message_id(raw.unstructured("in-reply-to").split(">")[0])
    parsed.references = [normalize_message_id(ref) for ref in raw.unstructured("references").split() if ref.strip("<>")]
    parsed.subject = " ".join(raw.unstructured("subject").split())[:998]
    senders = raw.addresses("from")
    if senders:
        parsed.from_name, parsed.from_addr = senders[0]
    parsed.to_addrs = [addr for _, addr in raw.addresses("to") + raw.addresses("cc")][:100]
    parsed.date = _read_date(raw.date())
    parsed.headers = {name: raw.kept(name)[:MAX_HEADER_CHARS] for name in KEPT_HEADERS if name in raw.first}


class RawHeaders:
    """A message's headers as they arrived, read without the header parser where that gives the same text.

    The email package's header objects are exact but dear: building one for From, Subject, Date and
    Message-ID took half the time of parsing a message. Most headers are plain ASCII in the simplest form,
    and for those the parsed header says exactly what the raw value says, so the parser is kept for the
    rest: encoded words, 8-bit bytes, comments and the odd forms whose reading only it knows.
    """

    def __init__(self, message: Message) -> None:
        self.message = message
        self.first: dict[str, str] = {}
        self.repeated: set[str] = set()
        for name, value in message.raw_items():
            key = name.lower()
            if key in self.first:
                self.repeated.add(key)
            else:
                # Unfolded as the policy unfolds before parsing: line breaks go, the whitespace after stays.
                self.first[key] = bounded_header(key, _LINE_BREAK.sub("", str(value)))

    def plain(self, name: str) -> str | None:
        """The value when it is ASCII with no encoded words, else None."""
        value = self.first.get(name)
        return value if value is not None and value.isascii() and "=?" not in value else None

    def unstructured(self, name: str) -> str:
        """Free text (Subject, References): the parser changes nothing in plain ASCII."""
        value = self.plain(name)
        return clean(value) if value is not None else header(self.message, name)

    def kept(self, name: str) -> str:
        """A header kept for the rules: those the email package has no parser of its own for are free text."""
        return header(self.message, name) if name in _STRUCTURED else self.unstructured(name)

    def message_id(self) -> str:
        """One ``<left@right>`` id is read as the parser reads it; anything else goes to the parser."""
        value = self.plain("message-id")
        return value.strip() if value is not None and _SIMPLE_ID.fullmatch(value.strip()) else header(self.message, "message-id")

    def date(self) -> str:
        # The parser reads the raw value with parsedate_to_datetime and writes it out again; reading it
        # here once gives the same moment, and a date it cannot read is returned as written either way.
        value = self.plain("date")
        return clean(value) if value is not None else header(self.message, "date")

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(name, address) pairs; plain ASCII without comments splits the same with ``getaddresses``."""
        value = self.plain(name)
        if value is None or name in self.repeated or "(" in value:
            return _addresses(self.message, name)
        pairs = [(n.strip(), a.strip().lower()) for n, a in email.utils.getaddresses([clean(value)])]
        found = [(n, a) for n, a in pairs if is_address(a)]
        return found or _addresses(self.message, name)


_LINE_BREAK = re.compile(r"\n|\r")
_STRUCTURED = frozenset(READING_POLICY.header_factory.registry)  # Content-Type, Reply-To ...: parsed, never raw
_SIMPLE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+>")


def _read_date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # RFC 5322 -0000: the zone is unknown, read it as UTC
            when = when.replace(tzinfo=dt.timezone.utc)
        # In UTC now, so a date near year 9999 overflows here rather than when the database stores it.
        return when.astimezone(dt.timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def decode_part(part: Message) -> str:
    """The text of one MIME part, surviving unknown, missing and lying charsets."""
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = str(part.get_payload() or "").encode("utf-8", "replace")
    declared = (part.get_content_charset() or "").lower()
    if declared in WESTERN_CHARSETS:
        # Mail labelled ASCII or Latin-1 is very often really UTF-8; valid UTF-8 is rare by accident.
        candidates = ["utf-8", declared or "us-ascii", "cp1252"]
    else:
        candidates = [declared, "utf-8", "cp1252"]
    for charset in candidates:
        try:
            return clean(payload.decode(charset))
        except (LookupError, ValueError):  # ValueError: UnicodeError, which codecs such as "undefined" raise
            continue
    return clean(payload.decode("latin-1"))


def html_to_text(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_links = False
    converter.ignore_tables = False
    return converter.handle(html).strip()


def _is_attachment(part: Message) -> bool:
    disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    # The type first: asking a text part for its filename parses its parameters, and a named text part
    # is read as text anyway.
    return part.get_content_maintype() != "text" and bool(part.get_filename())


def _read_body(message: Message, parsed: ParsedMail) -> None:
    plain: list[str] = []
    html: list[str] = []
    for part in walk_parts(message):
        if part.is_multipart() or part.get_content_type() in ("message/rfc822", "message/delivery-status"):
            continue
        if _is_attachment(part):
            parsed.attachments.append(_describe_attachment(part))
        elif part.get_content_type() == "text/plain":
            plain.append(decode_part(part))
        elif part.get_content_type() == "text/html":
            html.append(decode_part(part))
    if plain:
        parsed.full_text = "\n\n".join(plain)
    elif html:
        parsed.html_only = True
        parsed.full_text = "\n\n".join(html_to_text(h) for h in html)
    _split_reply(parsed)


def _describe_attachment(part: Message) -> AttachmentInfo:
    data = part.get_payload(decode=True) or b""
    try:
        filename = part.get_filename() or ""
    except Exception:
        filename = ""
    return AttachmentInfo(
        filename=clean(filename)[:500],
        content_type=clean(part.get_content_type())[:200],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _split_reply(parsed: ParsedMail) -> None:
    """Separate the new text from quoted history, forwarded headers and the signature."""
    text = parsed.full_text
    if not text.strip():
        return
    # Hosts set requests out as "- new title: ..." lists; by default the library takes a line starting
    # "- " for a signature ("- Jo") and drops everything after it from the new text.
    replies = EmailMessage(text=text, languages=["en"], keep_hyphen_lists=True).read().replies
    latest = replies[0]
    # Inline quotes with no attribution line stay in the first fragment; they are still not new text.
    new_lines = [line for line in latest.body.splitlines() if not line.lstrip().startswith(">")]
    parsed.new_text = "\n".join(new_lines).strip()
    parsed.signature = latest.signatures
    # Keep the forwarded headers ("From: Mara Quinlan <mquinlan@...>"): they say who the quoted text is from.
    parsed.quoted = "\n\n".join(r.content for r in replies[1:] if r.content)
    forward_marks = replies[0].content[-200:] + replies[1].headers if len(replies) > 1 else ""
    is_forward = re.match(r"\s*(?:fw|fwd)\s*:", parsed.subject, re.IGNORECASE) or re.search(
        r"forwarded message|^-+ ?original message", forward_marks, re.IGNORECASE | re.MULTILINE)
    if len(replies) > 1 and is_forward:
        parsed.forwarded = replies[1].body
        parsed.forwarded_from = _writer_in(replies[1].headers)
    if not parsed.new_text and len(replies) > 1 and not latest.content:
        # A forward with no note of its own: the forwarded text is what the host wants read.
        parsed.new_text = replies[1].body


_FROM_LINE = re.compile(r"^\s*\**from:\**\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def _writer_in(headers: str) -> tuple[str, str]:
    """The forwarded message's "From: Name <address>" line, as (name, lower-cased address)."""
    line = _FROM_LINE.search(headers)
    if not line:
        return ("", "")
    name, address = email.utils.parseaddr(line.group(1))
    return (name.strip().strip('"'), address.lower()) if "@" in address else ("", "")


def _looks_like_email(message: Message, parsed: ParsedMail) -> bool:
    """Binary garbage parses as a body with no headers at all; a real email has at least one."""
    if not message.keys():
        return False
    return bool(parsed.from_addr or parsed.subject or _is_written_text(parsed.full_text) or parsed.attachments)


def _is_written_text(text: str) -> bool:
    """False for bytes that only decoded as text because cp1252 and Latin-1 accept any byte."""
    sample = text[:4000]
    if not sample.strip():
        return False
    control = sum(1 for ch in sample if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"))
    return control / len(sample) < MAX_CONTROL_SHARE
