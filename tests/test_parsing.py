"""Reading one email: new text versus quotes and signatures, HTML-only mail, charsets."""

from __future__ import annotations

from workflows.parsing import parse_message

GMAIL_REPLY = b"""From: Jane Doe <jdoe@gfps.k12.mt.us>
To: OPIPDUPS@mt.gov
Subject: Re: [PDU-1001] Math night
Message-ID: <r1@gfps.k12.mt.us>
Content-Type: text/plain; charset=utf-8

We issued 23 certificates for Math Night.

Thanks,
Jane Doe
Curriculum Director
(406) 555-0142

On Mon, Nov 3, 2026 at 9:14 AM OPI PDUPS <OPIPDUPS@mt.gov> wrote:
> Please report your certificate counts.
> Call (406) 555-9999 with questions.
"""

OUTLOOK_REPLY = b"""From: Bob Smith <bsmith@gfps.k12.mt.us>
To: OPIPDUPS@mt.gov
Subject: RE: remove user
Message-ID: <r2@gfps.k12.mt.us>
Content-Type: text/plain; charset=utf-8

Please remove Carol King, she retired.

Bob

From: OPI PDUPS <OPIPDUPS@mt.gov>
Sent: Monday, November 3, 2026 9:14 AM
To: Bob Smith <bsmith@gfps.k12.mt.us>
Subject: RE: remove user

Who should we remove?
"""

HTML_ONLY = b"""From: Ana <ana@msubillings.edu>
To: OPIPDUPS@mt.gov
Subject: New phone
Message-ID: <h1@msubillings.edu>
Content-Type: text/html; charset=utf-8

<html><body><div>Our new phone number is <b>(406) 555-0199</b>.</div>
<div class="gmail_quote">On Mon, Nov 3, 2026 OPI PDUPS wrote:<blockquote>old text (406) 555-0000</blockquote></div>
</body></html>
"""


def test_it_separates_new_text_from_a_gmail_quote_and_signature():
    parsed = parse_message(GMAIL_REPLY)
    assert parsed.new_text == "We issued 23 certificates for Math Night."
    assert "(406) 555-0142" in parsed.signature
    assert "555-9999" in parsed.quoted and "555-9999" not in parsed.new_text


def test_it_separates_new_text_from_an_outlook_quote():
    parsed = parse_message(OUTLOOK_REPLY)
    assert "Carol King" in parsed.new_text
    assert "Who should we remove" not in parsed.new_text


def test_it_reads_html_only_mail_as_text():
    parsed = parse_message(HTML_ONLY)
    assert parsed.html_only
    assert "(406) 555-0199" in parsed.new_text
    assert "555-0000" not in parsed.new_text
    assert "<div>" not in parsed.full_text


def test_it_reads_latin1_labelled_utf8_correctly():
    raw = "From: x@y.org\nSubject: hi\nContent-Type: text/plain; charset=iso-8859-1\n\nJosé Núñez\n".encode()
    assert parse_message(raw).new_text == "José Núñez"


def test_it_reads_true_latin1():
    raw = b"From: x@y.org\nSubject: hi\nContent-Type: text/plain; charset=iso-8859-1\n\nJos\xe9 N\xfa\xf1ez\n"
    assert parse_message(raw).new_text == "José Núñez"


def test_it_decodes_encoded_word_headers():
    raw = b"From: =?utf-8?q?Zo=C3=AB_Br=C3=A4ndle?= <zoe@x.org>\nSubject: =?utf-8?b?SMOpbGxv?=\n\nhi\n"
    parsed = parse_message(raw)
    assert (parsed.from_name, parsed.from_addr, parsed.subject) == ("Zoë Brändle", "zoe@x.org", "Héllo")


def test_it_gives_a_reason_for_an_empty_message():
    assert parse_message(b"").unreadable == "empty message"
