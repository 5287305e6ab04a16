"""Hostile email: raw bytes that break parsers, databases and assumptions, built by hand and by Hypothesis.

Each builder returns the exact bytes a broken or malicious client could hand to SMTP or leave in a mailbox.
Most carry a plain From and Message-ID, so a test can see the one hazard in isolation.
"""

from __future__ import annotations

import base64
import email.utils
import io
import random
import zipfile

from hypothesis import strategies as st

MAILBOX = b"OPIPDUPS@mt.gov"
CRLF = b"\r\n"
JOSE = "José Núñez"


def _envelope(*extra: bytes, message_id: bytes = b"<hostile@example.org>") -> bytes:
    """Ordinary top headers, then ``extra`` header lines (without line endings).

    Dated now, because intake files old mail without answering it, and answering is where long subjects
    and odd senders meet more columns.
    """
    lines = [
        b"From: Jane Doe <jdoe@gfps.k12.mt.us>",
        b"To: " + MAILBOX,
        b"Subject: Cancelled workshop",
        b"Date: " + email.utils.formatdate().encode(),
        b"Message-ID: " + message_id,
        *extra,
    ]
    return CRLF.join(lines) + CRLF


def _text(body: bytes, charset: bytes = b"utf-8", encoding: bytes = b"8bit", subtype: bytes = b"plain") -> bytes:
    return _envelope(
        b"MIME-Version: 1.0",
        b"Content-Type: text/" + subtype + b"; charset=" + charset,
        b"Content-Transfer-Encoding: " + encoding,
    ) + CRLF + body + CRLF


def _mixed(boundary: bytes, *parts: bytes, closed: bool = True) -> bytes:
    """A multipart/mixed body from already-built parts (each with its own headers)."""
    body = b"".join(b"--" + boundary + CRLF + part + CRLF for part in parts)
    if closed:
        body += b"--" + boundary + b"--" + CRLF
    head = _envelope(b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
    return head + CRLF + body


def _attachment(filename: bytes, data: bytes, content_type: bytes = b"application/octet-stream") -> bytes:
    return (
        b"Content-Type: " + content_type + CRLF
        + b'Content-Disposition: attachment; filename="' + filename + b'"' + CRLF
        + b"Content-Transfer-Encoding: base64" + CRLF + CRLF
        + base64.encodebytes(data).replace(b"\n", CRLF)
    )


PLAIN_PART = b"Content-Type: text/plain; charset=utf-8" + CRLF + CRLF + b"Please see the attached file."


# --- Malformed MIME -----------------------------------------------------------------------------------


def missing_boundary() -> bytes:
    head = _envelope(b"MIME-Version: 1.0", b"Content-Type: multipart/mixed")
    return head + CRLF + b"--\r\nContent-Type: text/plain\r\n\r\nhello\r\n----\r\n"


def unterminated_multipart() -> bytes:
    return _mixed(b"BOUND", PLAIN_PART, b"Content-Type: text/plain\r\n\r\nand this part never ends", closed=False)


def bad_content_type_parameters() -> bytes:
    return _envelope(
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=\"utf-8; ;;=; name==x; charset*=''%ZZ; format*0*=%; =q; \"",
    ) + CRLF + b"Parameters no parser agrees on." + CRLF


def content_type_without_subtype() -> bytes:
    return _envelope(b"MIME-Version: 1.0", b"Content-Type: text") + CRLF + b"A type with no subtype." + CRLF


def attachment_content_type_with_nul() -> bytes:
    part = _attachment(b"report.bin", b"data", content_type=b"application/x-\x00evil")
    return _mixed(b"NULTYPE", PLAIN_PART, part)


def attachment_content_type_enormous() -> bytes:
    part = _attachment(b"report.bin", b"data", content_type=b"application/x-" + b"a" * 5000)
    return _mixed(b"LONGTYPE", PLAIN_PART, part)


def _nest(part: bytes, depth: int) -> bytes:
    """``part`` inside ``depth`` multiparts, each the only part of the one around it."""
    for level in range(depth):
        boundary = b"level%d" % level
        part = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"' + CRLF + CRLF
            + b"--" + boundary + CRLF + part + b"--" + boundary + b"--" + CRLF
        )
    return part


def nested_multipart(depth: int) -> bytes:
    text = b"Content-Type: text/plain" + CRLF + CRLF + b"The innermost text." + CRLF
    return _envelope(b"MIME-Version: 1.0") + _nest(text, depth)


def nested_multipart_300() -> bytes:
    return nested_multipart(300)


def nested_multipart_2000() -> bytes:
    return nested_multipart(2000)


def _bounce_head(message_id: bytes, *extra: bytes) -> bytes:
    return CRLF.join([
        b"From: MAILER-DAEMON@example.org",
        b"To: " + MAILBOX,
        b"Subject: Undeliverable: Cancelled workshop",
        b"Message-ID: " + message_id,
        *extra,
    ]) + CRLF + CRLF


def _delivery_report(message_id: bytes, report: bytes) -> bytes:
    """An RFC 3464 report whose only part is ``report``."""
    head = _bounce_head(
        message_id, b"MIME-Version: 1.0", b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"'
    )
    return head + b"--R" + CRLF + report + b"--R--" + CRLF


def _delivery_status(recipient: bytes) -> bytes:
    return (
        b"Content-Type: message/delivery-status" + CRLF + CRLF
        + b"Reporting-MTA: dns; mx.example.org" + CRLF + CRLF
        + b"Final-Recipient: rfc822; " + recipient + CRLF + b"Action: failed" + CRLF
    )


def nested_delivery_report() -> bytes:
    """A bounce whose report is buried deep: the bounce rules must find it without recursing."""
    return _delivery_report(b"<deep-report@example.org>", _nest(_delivery_status(b"gone@example.org"), 300))


# --- Charsets ------------------------------------------------------------------------------------------


def unknown_charset() -> bytes:
    return _text("Bonjour, José".encode("utf-8"), charset=b"x-unknown-42")


def codec_that_always_fails() -> bytes:
    """Python's ``undefined`` codec raises UnicodeError, not UnicodeDecodeError, for every input."""
    return _text(b"Please remove our workshop.", charset=b"undefined")


def ascii_declared_utf8_bytes() -> bytes:
    return _text(f"Hello from {JOSE}".encode("utf-8"), charset=b"us-ascii")


def utf8_declared_latin1_bytes() -> bytes:
    return _text(f"Hello from {JOSE}".encode("latin-1"), charset=b"utf-8")


def latin1_declared_utf8_bytes() -> bytes:
    return _text(f"Hello from {JOSE}".encode("utf-8"), charset=b"iso-8859-1")


def encoded_words_unknown_charset() -> bytes:
    return CRLF.join([
        b"From: =?x-unknown-42?q?Jos=E9_N=FA=F1ez?= <jnunez@example.org>",
        b"To: " + MAILBOX,
        b"Subject: =?x-unknown-42?b?3q2+7w==?= =?utf-8?q?caf=C3=A9?= =?broken",
        b"Message-ID: <encoded-words@example.org>",
    ]) + CRLF + CRLF + b"Body is fine." + CRLF


# --- NUL bytes -----------------------------------------------------------------------------------------


def nul_in_headers() -> bytes:
    return CRLF.join([
        b"From: Ja\x00ne <jdoe\x00@gfps.k12.mt.us>",
        b"To: " + MAILBOX,
        b"Subject: Cancel\x00led workshop",
        b"Message-ID: <nul\x00id@example.org>",
        b"In-Reply-To: <re\x00ply@example.org>",
        b"References: <a\x00@example.org> <b@example.org>",
        b"X-Loop: \x00",
        b"Auto-Submitted: n\x00o",
    ]) + CRLF + CRLF + b"Hello." + CRLF


def nul_in_body() -> bytes:
    return _text(b"Please\x00 remove\x00\x00 our workshop.")


def nul_in_html_body() -> bytes:
    html = b"<html><body><p>Please\x00 remove &#0; our &#xD800; workshop &#1114112;.</p></body></html>"
    return _text(html, subtype=b"html")


def nul_in_attachment_filename() -> bytes:
    return _mixed(b"NULNAME", PLAIN_PART, _attachment(b"sign\x00in.pdf", b"%PDF-1.4", b"application/pdf"))


def nul_in_encoded_filename() -> bytes:
    part = (
        b"Content-Type: application/pdf" + CRLF
        + b"Content-Disposition: attachment; filename*=utf-8''sign%00in%FF.pdf" + CRLF + CRLF + b"data"
    )
    return _mixed(b"NULNAME2", PLAIN_PART, part)


# --- Size ----------------------------------------------------------------------------------------------


def enormous_subject() -> bytes:
    """A 1 MB Subject of short words: the stdlib header parser is quadratic in the number of words."""
    return CRLF.join([
        b"From: jdoe@gfps.k12.mt.us",
        b"To: " + MAILBOX,
        b"Subject: " + b"ab " * 350_000,
        b"Message-ID: <huge-subject@example.org>",
    ]) + CRLF + CRLF + b"Hello." + CRLF


def enormous_references() -> bytes:
    references = b" ".join(b"<ref%d@example.org>" % n for n in range(60_000))
    return _envelope(b"References: " + references, b"In-Reply-To: " + references) + CRLF + b"Hello." + CRLF


def many_received_headers() -> bytes:
    received = b"".join(
        b"Received: from relay%d.example.org by mx.example.org; Mon, 16 Nov 2026 09:00:00 +0000\r\n" % n
        for n in range(10_000)
    )
    return received + _envelope() + CRLF + b"Hello." + CRLF


def enormous_attachment_filename() -> bytes:
    return _mixed(b"LONGNAME", PLAIN_PART, _attachment(b"n" * 200_000 + b".pdf", b"%PDF-1.4", b"application/pdf"))


def huge_attachment(size: int = 25 * 1024 * 1024) -> bytes:
    data = random.Random(25).randbytes(size)
    return _mixed(b"HUGE", PLAIN_PART, _attachment(b"roster.bin", data))


# --- Nothing, or nothing like an email -----------------------------------------------------------------


def empty_message() -> bytes:
    return b""


def only_whitespace() -> bytes:
    return b" \r\n\t\r\n\r\n   \n\n\x0b\x0c"


def headers_only() -> bytes:
    return _envelope()


def binary_garbage() -> bytes:
    return random.Random(1042).randbytes(64 * 1024)


def line_noise_with_colons() -> bytes:
    """Garbage whose first line looks enough like a header to be read as one."""
    return b"x-junk: \xff\xfe\x00" + CRLF + random.Random(7).randbytes(4096)


# --- Broken transfer encodings and attachments --------------------------------------------------------


def bad_base64_body() -> bytes:
    return _text(b"UGxlYXNlIHJlbW92ZS!!!@@@###\r\n====QQQ\r\nnot base64 at all\r\n=", encoding=b"base64")


def bad_quoted_printable_body() -> bytes:
    return _text(b"Please =ZZremove =\r\n=E9=C3=\r\n=3 our = workshop=", encoding=b"quoted-printable")


def bad_uuencode_body() -> bytes:
    return _text(b"begin 644 x.txt\r\n!!!!garbage\r\nend\r\n", encoding=b"x-uuencode")


def zip_attachment() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("roster.csv", "name,email\nJane Doe,jdoe@gfps.k12.mt.us\n")
        archive.writestr("../../etc/passwd", "root:x:0:0")
    return _mixed(b"ZIP", PLAIN_PART, _attachment(b"roster.zip", buffer.getvalue(), b"application/zip"))


SCRIPT_TEXT = "stealCookies"
STYLE_TEXT = "color: hotpink"


def html_with_script_and_style() -> bytes:
    html = (
        f"<html><head><style>p {{ {STYLE_TEXT} }}</style><script>{SCRIPT_TEXT}(document.cookie)</script></head>"
        f"<body><p>Please remove our workshop.</p><script type='text/javascript'>{SCRIPT_TEXT}()</script>"
        "</body></html>"
    )
    return _text(html.encode(), subtype=b"html")


def rfc822_attachment_that_is_garbage() -> bytes:
    part = b"Content-Type: message/rfc822" + CRLF + CRLF + random.Random(3).randbytes(2048)
    return _mixed(b"RFC822", PLAIN_PART, part)


# --- Identity headers ----------------------------------------------------------------------------------


def duplicated_message_id() -> bytes:
    head = _envelope(b"Message-ID: <second-copy@example.org>", b"Message-ID: <third@example.org>")
    return head + CRLF + b"Hi." + CRLF


def enormous_message_id() -> bytes:
    return _envelope(message_id=b"<" + b"m" * 5000 + b"@example.org>") + CRLF + b"Hello." + CRLF


INVALID_DATES = (
    b"not a date at all",
    b"Mon, 32 Feb 2026 25:61:61 +0000",
    b"Fri, 31 Dec 9999 23:59:59 -2359",
    b"Mon, 01 Jan 0100 00:00:00 +2359",
    b"Mon, 16 Nov 2026 09:00:00 +9999",
    b"99999999999999999999",
    b"=?utf-8?q?Mon=2C_16_Nov?=",
)


def _without_date(raw: bytes) -> bytes:
    return b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"Date: "))


def invalid_dates() -> bytes:
    head = _without_date(_envelope()) + b"".join(b"Date: " + value + CRLF for value in INVALID_DATES)
    return head + CRLF + b"Hello." + CRLF


def date_far_in_the_future() -> bytes:
    """Valid by RFC 5322 but outside what a UTC timestamp can hold once the offset is applied."""
    return _without_date(_envelope()) + b"Date: Fri, 31 Dec 9999 23:59:59 -2359" + CRLF + CRLF + b"Hi."


UNPARSEABLE_FROMS = (
    b"<<<@@@>>>",
    b'"unterminated <jdoe@gfps.k12.mt.us>',
    b"=?utf-8?q?broken <",
    b"a@b@c@d",
    b";;;;,,,,::::",
    b"(comment (nested (deeper",
    b"\\",
    b"Group: ;",
    b"<>",
)


def unparseable_from(value: bytes, message_id: bytes = b"<hostile@example.org>") -> bytes:
    head = _envelope(message_id=message_id).replace(b"From: Jane Doe <jdoe@gfps.k12.mt.us>", b"From: " + value)
    return head + CRLF + b"Hello." + CRLF


def sender_address_too_long() -> bytes:
    """An address longer than RFC 5321 section 4.5.3.1.3 allows (254 octets) still has to be kept."""
    return unparseable_from(b"x" * 400 + b"@example.org")


def longest_valid_sender() -> bytes:
    """A 254-octet address, as long as RFC 5321 allows: 64 octets of local part and a 189-octet domain."""
    domain = b"a" * 63 + b"." + b"b" * 63 + b"." + b"c" * 57 + b".org"
    return unparseable_from(b"x" * 64 + b"@" + domain)


def long_subject() -> bytes:
    """A Subject just under RFC 5322's 998-character line limit, as some ticketing systems write."""
    return _envelope().replace(b"Subject: Cancelled workshop", b"Subject: " + b"word " * 197) + CRLF + b"Hi."


def bounce_with_enormous_failed_recipient() -> bytes:
    failed = b"X-Failed-Recipients: " + b"y" * 600 + b"@example.org, ok@example.org"
    return _bounce_head(b"<long-failed@example.org>", failed) + b"Delivery failed." + CRLF


def delivery_report_with_enormous_recipient() -> bytes:
    return _delivery_report(b"<long-dsn@example.org>", _delivery_status(b"z" * 600 + b"@example.org"))


def line_endings_of_every_kind() -> bytes:
    return _envelope().replace(CRLF, b"\r") + b"\n\r\nHello\rthere\n\r\r\nfriend\n"


def folded_first_line() -> bytes:
    return b" folded continuation with no header before it" + CRLF + _envelope() + CRLF + b"Hello." + CRLF


# --- Hypothesis: random MIME trees ---------------------------------------------------------------------

HEADER_NAMES = (
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Reply-To",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "Auto-Submitted",
    "Precedence", "X-Loop", "Return-Path", "X-Failed-Recipients", "List-Id", "X-Autoreply",
)
CONTENT_TYPES = (
    "text/plain", "text/html", "multipart/mixed", "multipart/alternative", "multipart/report",
    "message/rfc822", "message/delivery-status", "application/octet-stream", "application/zip",
    "image/png", "text", "/", "x/y/z", "",
)
CHARSETS = ("utf-8", "us-ascii", "iso-8859-1", "windows-1252", "utf-16", "x-unknown-42", "undefined", "idna", "")
TRANSFER_ENCODINGS = ("7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", "")
WIRE_CODECS = ("utf-8", "latin-1", "utf-16-le")  # how text actually travels, whatever the headers say
# Values that reach the rarer paths: encoded-words, RFC 2231 parameters, the non-request rules' triggers.
TRICKY_VALUES = (
    "=?x-unknown-42?q?Jos=E9?= <jnunez@example.org>",
    "=?utf-8?b?////?= =?utf-8?q?=00?=",
    "text/plain; charset*=x-unknown''%FF%00",
    "attachment; filename*0*=utf-8''%00%FF; filename*1=\"x\x00.pdf\"",
    "attachment; filename=" + "f" * 3000,
    "multipart/report; report-type=delivery-status; boundary=b",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "<" + "m" * 3000 + "@example.org>",
    "auto-replied", "bulk", "<>", "OPIPDUPS@mt.gov", "MAILER-DAEMON@example.org",
    "Undeliverable: Out of office", "Action: failed",
)

# Any code point a string can hold except lone surrogates, which have no bytes to travel as.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
header_name = st.one_of(st.sampled_from(HEADER_NAMES), st.from_regex(r"[!-9;-~]{1,20}", fullmatch=True))
header_value = st.one_of(any_text, st.sampled_from(TRICKY_VALUES + tuple(v.decode() for v in UNPARSEABLE_FROMS)))
wire_text = st.builds(lambda text, codec: text.encode(codec, "replace"), any_text, st.sampled_from(WIRE_CODECS))


@st.composite
def header_lines(draw: st.DrawFn) -> bytes:
    """Random header lines: known and invented names, values with control characters and any script."""
    count = draw(st.integers(0, 8))
    lines = []
    for _ in range(count):
        # Header values travel as UTF-8 or Latin-1; UTF-16 would put NULs where a header cannot have them.
        codec = draw(st.sampled_from(WIRE_CODECS[:2]))
        lines.append(draw(header_name).encode() + b": " + draw(header_value).encode(codec, "replace"))
    return CRLF.join(lines)


@st.composite
def leaf_part(draw: st.DrawFn) -> bytes:
    """One non-multipart part: random type, charset and transfer encoding, body encoded as declared or not."""
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    cte = draw(st.sampled_from(TRANSFER_ENCODINGS))
    body = draw(st.one_of(wire_text, st.binary(max_size=200)))
    if cte == "base64" and draw(st.booleans()):
        body = base64.encodebytes(body)
    headers = [
        f"Content-Type: {content_type}; charset={charset}".encode(),
        b"Content-Transfer-Encoding: " + cte.encode(),
        draw(header_lines()),
    ]
    return CRLF.join(h for h in headers if h) + CRLF + CRLF + body


def _multipart_of(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        parts = draw(children)
        boundary = draw(st.sampled_from([b"b", b"==x==", b"", b"--", b"a b"]))
        subtype = draw(st.sampled_from([b"mixed", b"alternative", b"report; report-type=delivery-status"]))
        closed = draw(st.booleans())
        head = b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"' + CRLF + CRLF
        body = b"".join(b"--" + boundary + CRLF + part + CRLF for part in parts)
        return head + body + (b"--" + boundary + b"--" + CRLF if closed else b"")

    return build()


mime_part = st.recursive(leaf_part(), lambda inner: _multipart_of(st.lists(inner, max_size=4)), max_leaves=12)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A whole message: random top headers, a random MIME tree, and sometimes raw noise spliced in."""
    top = draw(header_lines())
    tree = draw(mime_part)
    raw = (top + CRLF if top else b"") + tree
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=40)) + raw[at:]
    return raw

