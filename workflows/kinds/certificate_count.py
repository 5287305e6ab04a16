"""certificate_count: how many certificates a host issued for an event it held.

By the PDUPS manual, an event that took place but issued no certificates is not a cancellation: it is a
count of 0, and is read that way even when the host asks to "delete" it.
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz
from sqlalchemy.orm import Session

from storage.enums import TicketKind
from storage.registry import Event
from workflows.extract import NUMBER, NUMBER_WORD_PATTERN, number_value, table_rows
from workflows.kinds.base import Context, Cue, Fields, KindSpec, Outcome, cue
from workflows.matching import fold

CERT = r"(?:certificates?|certs?|pdu certificates?)"
PEOPLE = (r"(?:educators?|teachers?|participants?|people|attendees|staff|folks|paras|paraprofessionals|members|students|"
          r"principals?|administrators?|counselors?|librarians?|coaches|nurses|leaders|specialists|coordinators)")
HELD = r"(?:did (?:happen|take place|go|run|meet)|we met|(?:we|it) (?:was |were )?(?:held|ran|hosted)|did hold|took place|happened|went (?:ahead|on|forward)|still (?:happened|ran|met))"
NONE_ISSUED = (
    rf"(?:no|not any|zero|none of the)\s+(?:\w+\s+){{0,3}}{CERT}|(?:did not|didn't|won't|will not|not to|decided not to)\s+"
    rf"(?:\w+\s+){{0,3}}(?:issue|give out|give|award|hand out|send)\s+(?:\w+\s+){{0,3}}{CERT}|(?:nobody|no one|no-one|none of them) (?:got|received|earned|was given)"
    # "we issued none", "so none were issued", "not a single teacher asked for the certificate"
    rf"|\b(?:issued|gave out|awarded|handed out)\s+(?:none|zero)\b|\bnone (?:were|was) (?:issued|given|awarded)"
    rf"|\bnot (?:a single|one)\b(?:\s+[\w'-]+){{0,4}}\s+(?:asked for|requested|wanted|needed|claimed|got|received|earned)\b"
)
# What people do to end up with a certificate, in any tense: "87 educators requested the certificate",
# "22 people complete both days and get certificates".
TAKE_UP = r"(?:request\w*|ask\w* for|get|got|gotten|receiv\w*|earn\w*|claim\w*|download\w*|complet\w*|finish\w*)"

CUES: tuple[Cue, ...] = (
    # "thirty-one (31) certificates"; a year ("in February 2026 has lost her certificate") is not a count.
    cue(rf"\b(?!(?:19|20)\d\d\b){NUMBER}\s+(?:\(\d+\)\s+)?(?:\w+\s+){{0,3}}{CERT}\b", 3.0),
    cue(rf"\b{CERT}\s+(?:were\s+|was\s+)?(?:issued|given|awarded|distributed|handed out|earned)", 2.5),
    cue(rf"\b(?:issued|gave out|gave|awarded|handed out|distributed)\s+(?:[\w()-]+\s+){{0,4}}{CERT}", 2.5),
    cue(rf"\b(?:received|earned|got|receive)\s+(?:their|a|the|an|our)?\s*(?:opi\s+)?(?:pdu\s+)?{CERT}", 2.5),
    cue(rf"\b(?:{CERT}\s*(?:count|number|total)s?|number of {CERT}|{CERT} issued)", 2.0),
    cue(rf"\b{NUMBER}\s+{PEOPLE}\b.{{0,60}}\b(?:completed|attended|received|earned|finished)", 1.5),
    # "we had 23 teachers complete the training": the verb after "had N people" is in its plain form.
    cue(rf"\bhad\s+{NUMBER}\s+(?:[\w'-]+\s+){{0,2}}?{PEOPLE}\s+(?:complete|attend|finish|earn|receive|get|take)\b", 2.5),
    cue(rf"\b{NUMBER}\s+(?:[\w'-]+\s+){{0,3}}?{PEOPLE}\s+(?:[\w'-]+\s+){{0,2}}?{TAKE_UP}\b(?:\s+[\w'-]+){{0,5}}?\s+{CERT}\b", 2.5),
    cue(rf"\b(?:completed|attended)\b.{{0,40}}\b{NUMBER}\s+{PEOPLE}", 1.0),
    cue(HELD, 5.0, also=NONE_ISSUED),
    cue(r"\b(?:record|enter|mark|report)\w*\s+(?:it|this|that|them)?\s*(?:as\s+)?(?:a\s+)?(?:zero|0)\b|\bcount of (?:zero|0)\b", 4.0),
    cue(r"\b(?:reporting|report|record)\w*\b.{0,40}\b(?:numbers?|counts?|certificates?)\b", 1.5),
    cue(r"(?m)^\s*\d{1,4}\s*$", 1.5),  # a reply to a reminder that is just a number
    cue(r"\b(?:can|could|would|please)\s+(?:you\s+)?record\s+(?:that|this|it|them|those|these|the (?:count|number))\b", 2.0),
    cue(rf"\b{NUMBER}\s+(?:were\s+)?(?:issued|certified|awarded)\b|\bnumbers? for\b.{{0,60}}:\s*\d{{1,4}}\b", 3.0),
    # Asking where a certificate is, or what happened to a count already reported, is not a new count.
    cue(r"\b(?:we|already) (?:already )?(?:reported|recorded|sent|entered) (?:the |our |that |those |a |\d+ |all )?(?:counts?|numbers?|certificates)\b|\bwhere (?:is|are)\b|\bcan'?t find\b|\bblank certificate", -2.0),
    cue(rf"\b{CERT}\s+(?:already\s+)?(?:went out|were (?:already )?(?:issued|printed|given|handed out))\b.{{0,40}}\b(?:reissue|re-issue|reprint|fix|wrong|with)\b|\balready went out\b", -2.0),
    cue(r"\brecord (?:its|the|their|our|this|that) (?:count|number|total)s?\b|\brecord (?:a )?(?:0|zero)\b", 2.5),
    cue(r"\b(?:send|give|provide|email) (?:us|me) (?:a |an )?(?:list|report|export|spreadsheet)\b|\blist of (?:all )?(?:our |\w+ )?events\b", -3.0),
    cue(rf"\b{NUMBER}\s+(?:[a-z-]+\s+){{0,2}}(?:completed|received|earned|got|finished)\b", 1.5),
    cue(rf"\b(?:no one|nobody|not|none)\b.{{0,30}}\b(?:received|got|earned)\b.{{0,20}}\b{CERT}", -2.5),
    # One person's certificate ("I gave her the certificate", "I have the certificate") is not a count.
    cue(r"\b(?:gave|sent|emailed|handed|issued)\s+(?:her|him|them|the teacher)\s+(?:a|the|her|his|their)\s+certificate\b"
        r"|\b(?:i|she|he) (?:have|has|got|received) (?:the|my|her|his|a) certificate\b", -2.5),
    cue(r"\b(?:can|could|may|would) (?:we|i)\b.{0,60}\b(?:issue|give|offer|award)\b", -2.0),
)

_COUNT_PATTERNS = (
    re.compile(r"\b(?:record|enter|report|put down|mark)\s+(?:it\s+as\s+|it\s+|as\s+|a\s+)?(?P<n>\d{1,4}|zero)\b(?!\s*(?:hours|minutes|days|/))", re.IGNORECASE),
    re.compile(rf"\b(?:number of {CERT}(?: issued)?|{CERT} (?:count|total)|count)\s+(?:is|was|=)\s+(?P<n>{NUMBER})\b", re.IGNORECASE),
    re.compile(rf"\b{CERT}\s*(?:issued|count|total|given|awarded)\s*[:=|]+\s*(?P<n>{NUMBER})\b", re.IGNORECASE),
    re.compile(rf"(?:{NONE_ISSUED})|\b(?:as|record it|enter)\s+(?:a\s+)?(?:zero|0)\b", re.IGNORECASE),
    re.compile(rf"\b(?P<n>{NUMBER})\s+(?:[a-z]+\s+){{0,3}}{CERT}\b", re.IGNORECASE),
    re.compile(rf"\b(?P<n>{NUMBER})\s+(?:were\s+)?(?:issued|certified|awarded)\b", re.IGNORECASE),
    re.compile(r"\b(?:numbers?|counts?|totals?)\b[^.\n]{0,120}?:\s*(?P<n>\d{1,4})\b", re.IGNORECASE),
    re.compile(rf"\b{CERT}\s*(?:issued|count|total|given)?\s*[:=-]\s*(?P<n>{NUMBER})\b", re.IGNORECASE),
    re.compile(rf"\b(?:issued|gave out|awarded|handed out)\s*:?\s*(?P<n>{NUMBER})\b", re.IGNORECASE),
    re.compile(rf"\b(?P<n>{NUMBER})\s+(?:of\s+(?:our|the|their|your)\s+)?(?:\w+\s+){{0,2}}{PEOPLE}\b", re.IGNORECASE),
    re.compile(rf"\b(?P<n>{NUMBER})\s+(?:[a-z-]+\s+){{0,2}}(?:completed|attended|received|earned|got|finished)\b", re.IGNORECASE),
    re.compile(r"^\s*(?P<n>\d{1,4})\s*$", re.MULTILINE),
    re.compile(r"\|\s*(?P<n>\d{1,4})\s*$", re.MULTILINE),  # a table row ending in its count
)


SPELLED_THEN_DIGITS = re.compile(rf"\b{NUMBER_WORD_PATTERN}\s*\((\d{{1,4}})\)", re.IGNORECASE)


def read_count(text: str) -> int | None:
    """The number of certificates, written as digits or words; 0 when the host says none were issued."""
    text = SPELLED_THEN_DIGITS.sub(r"\1", text)  # "thirty-one (31)" once, as the digits
    for pattern in _COUNT_PATTERNS:
        for match in pattern.finditer(text):
            raw = match.groupdict().get("n")
            if raw is None:
                return 0
            if SIGNED_UP.match(text, match.end()):
                continue  # "52 people registered and 41 attended": those who signed up are not the count
            value = number_value(raw)
            if value is not None and not _names_rather_than_counts(text, match.start("n"), value):
                return value
    return None


# "Part 1", "Session 2", "Grade 5": a number that names something rather than counting it.
NAMES_A_PART = re.compile(r"\b(?:part|session|day|week|module|unit|no\.?|number|grade|level|cohort|room|step|phase|region|district)\s*#?\s*$")


SIGNED_UP = re.compile(r"\s+(?:had\s+|have\s+)?(?:registered|signed up|enrolled|rsvp'?d|were registered|were invited|registrations?)\b", re.IGNORECASE)


def _names_rather_than_counts(text: str, at: int, value: int) -> bool:
    """A date, a year or a part number ("Part 1"), not a number of certificates."""
    before = text[max(0, at - 12) : at].lower()
    after = text[at : at + 8]
    month_before = re.search(r"(?:oct|nov|sept?|dec|jan|feb|mar|apr|may|jun|jul|aug)\w*\.?\s*$", before)
    return (value > 1900 or bool(month_before) or before.endswith("/") or bool(re.match(r"\d+/", after))
            or bool(NAMES_A_PART.search(before)))


COUNT_HEADING = re.compile(r"\b(?:certificates?|counts?|issued|number|total)\b")


def tabled_count(ctx: Context) -> int | None:
    """A table of events and their counts ("Event | Date | Certificates issued"): the row of this event."""
    if ctx.event is None:
        return None
    title = fold(ctx.event.title)
    for row in table_rows(ctx.body):
        heading = next((h for h in row if COUNT_HEADING.search(h)), None)
        names_event = any(fuzz.partial_ratio(title, fold(cell)) >= 90 for cell in row.values() if len(cell) > 3)
        if heading and names_event and row[heading].split():
            return number_value(row[heading].split()[0])
    return None


def extract(ctx: Context) -> Fields:
    tabled = tabled_count(ctx)
    if tabled is not None:
        return {"count": tabled}
    count = read_count(ctx.body) if ctx.body.strip() else None
    if count is None:
        count = read_count(ctx.subject)
    return {} if count is None else {"count": count}


def missing(ctx: Context, fields: Fields) -> list[str]:
    needed = [] if ctx.host else ["host"]
    needed += [] if ctx.event else ["event"]
    return needed + ([] if "count" in fields else ["count"])


def describe(ctx: Context, fields: Fields) -> str:
    event = f" for {ctx.event.title}" if ctx.event else ""
    count = fields.get("count")
    return f"a certificate count of {count}{event}." if count is not None else f"a certificate count{event}."


def apply(session: Session, ticket: object, actor: str) -> Outcome:
    event = session.get(Event, ticket.event_id)  # type: ignore[attr-defined]
    before = {"certificates_issued": event.certificates_issued}
    event.certificates_issued = int(ticket.fields["count"])  # type: ignore[attr-defined]
    after = {"certificates_issued": event.certificates_issued}
    summary = f"Recorded {event.certificates_issued} certificates issued for {event.title} ({event.event_id})."
    return Outcome("event", event.event_id, "count", before, after, summary)


SPEC = KindSpec(
    kind=TicketKind.CERTIFICATE_COUNT,
    cues=CUES,
    extract=extract,
    missing=missing,
    describe=describe,
    about_event=True,
    prefer_ended=True,
    apply=apply,
    next_step="We will record the count in PDUPS. You do not need to do anything else.",
)
