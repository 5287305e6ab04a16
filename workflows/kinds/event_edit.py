"""event_edit: correct an event whose end date has passed.

Hosts edit events that have not ended themselves in PDUPS (List Events → Edit), so such a request is
answered with those steps instead of going to staff; staff can reopen it. Only values that differ from
the registry count as changes, so a host restating the old value changes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import Decimal, InvalidOperation

from rapidfuzz import fuzz
from sqlalchemy.orm import Session

from storage.enums import TicketKind
from storage.registry import Event
from workflows.dates import DateMention, find_dates, join_ranges
from workflows.extract import (
    NUMBER_WORD_PATTERN,
    labelled,
    number_value,
    occurrences,
    person_names,
    sentences,
    table_rows,
)
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, Outcome, cue
from workflows.matching import EventFacts, fold

ATTRIBUTES = r"(?:title|name of (?:the|our) (?:event|workshop|session|training)|instructor|presenter|facilitator|description|categor(?:y|ies)|start date|end date|dates?|hours?|hrs|location|venue|typo|misspell\w*|spelling|spelled)"
CUES: tuple[Cue, ...] = (
    cue(r"\b(?:change|changes|fix|fixes|fixed|correct|corrected|correction|corrections|update|updated|edit|revise|swap|amend|adjust|move|moved|replace)\b", 1.0),
    cue(r"\brenam(?:e|ed|ing)\b.{0,80}\bto\b", 2.5),
    cue(rf"\b{ATTRIBUTES}\b", 1.5),
    cue(r"\bshould (?:be|read|say|have been)\b|\binstead of\b|\bentered (?:incorrectly|wrong)|\bis wrong\b|\bwrong\b|\btypo\b", 1.5),
    cue(r"\b(?:won'?t|will not|can'?t|cannot|couldn'?t) let me edit|\bcan'?t edit\b|\bpast the end date\b|\balready (?:ended|happened|passed)\b|\bedit rights\b", 1.5),
    cue(r"\b(?:ended up teaching|taught it|will teach|will lead|will (?:be )?present\w*|be the instructor|actually ran|ran \d|actually held)", 1.5),
    cue(rf"\b(?:change|fix|correct|update|swap|edit)\b(?:\s+\w+){{0,3}}\s+{ATTRIBUTES}\b(?:\s+\w+){{0,6}}\s+(?:to|from)\b|\b(?:start|end) date (?:should|to|is|needs)|\bcategor(?:y|ies) (?:should |could |can |to )?be\b|\bswap the\b", 2.5),
    cue(r"\b(?:forgot to|need to|please|could you|can you) (?:add|include|remove|uncheck)\b.{0,60}\bcategor", 2.5),
    cue(r"\b(?:fix|correct|change|update|edit)\s+(?:the|our|its|that)\s+(?:event'?s?\s+)?(?:instructor|presenter|title|description|categor(?:y|ies)|dates?|hours|location|start date|end date)\b", 2.5),
    cue(r"\binstead\b|\bnot the \d|\brather than\b", 1.0),
    cue(r"\b(?:should (?:also )?be|be|is) listed (?:under|as)\b", 2.0),
    # A form of new values ("New date: 12/16", "New location: ...") or a move ("moving from March 9 to March 16")
    cue(r"(?m)^\W*(?:new|corrected|updated|correct) (?:date|dates|location|venue|time|title|instructor|presenter|hours|start date|end date)\s*:", 2.5),
    cue(r"\b(?:is|are|it'?s) (?:also )?moving\b|\bmoving (?:it )?from\b.{0,40}\bto\b", 2.0),
    cue(r"\b(?:going|switching|moving|moved|switched|changing|changed)\s+(?:it\s+)?(?:to\s+)?(?:an?\s+)?(?:virtual|online|zoom)\b", 1.5),
    cue(r"\b(?:list|put|make|show)\s+(?:her|him|them|[A-Z]\w+)\s+as\s+(?:the\s+)?(?:instructor|presenter|facilitator)\b|\b(?:line|name) (?:on|for) .{0,40} should (?:say|read|be)\b|\bnew title\b|\bmake it \d", 2.5),
)
STANDARD_CATEGORIES = (
    "Literacy", "Mathematics", "Science", "Social Studies", "Technology", "Special Education",
    "Social Emotional Learning", "Indian Education for All", "Leadership", "Assessment", "Arts",
    "Career and Technical Education", "English Learners", "Health Enhancement", "Early Childhood",
    "World Languages", "Physical Education", "Gifted and Talented", "Counseling", "Library Media",
)
NEW_VALUE = r"(?:should (?:be|read|say)|change (?:it|this|that|them|the \w+)? ?to|update (?:it|this|that|the \w+)? ?to|to read|correct \w+ is|is actually|was actually|actually (?:ran|was|is|held)|now (?:takes|is|runs)|(?:held|holding|had|having|ran|running) it|ended up (?:holding|having|running)|moved (?:it )?to|\bto)"
_QUOTED = re.compile(r"[\"“”']([^\"“”\n]{3,300})[\"“”']")


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except (InvalidOperation, ValueError):
        return None


def about(keywords: str) -> re.Pattern[str]:
    """The words that mark a sentence as being about one attribute; compiled when the module loads, so the
    first message that needs them does not pay for it."""
    return re.compile(keywords, re.IGNORECASE)


ABOUT_HOURS = about(r"\b(?:hours?|hrs?|minutes|mins)\b|-hour\b")
ABOUT_DATES = about(r"\b(?:dates?|starts?|started|end|ends|ended|ran|runs?|moved?|moving|postpon\w*|push(?:ed|ing)?|reschedul\w*|extend\w*|open|should be|actually|two[- ]day|instead|rather than|held|holding|ended up)\b")
ABOUT_TITLE = about(r"\b(?:title|name|typo|spell\w*|misspell\w*|should read|called|wording|listing|read)\b")
ABOUT_INSTRUCTOR = about(r"\b(?:instructor|presenter|facilitator|taught|teaching|teach|lead|led|present\w*|speaker|name)\b")
ABOUT_DESCRIPTION = about(r"\bdescription\b")
ABOUT_CATEGORIES = about(r"\bcategor(?:y|ies)\b|\blisted (?:under|as)\b|\bunder (?:the )?[A-Z][\w ]{2,40} (?:category|strand)\b")
ABOUT_LOCATION = about(r"\b(?:location|venue|moved it|mov(?:e|ed|es|ing)\b.{0,60}\bto the|mov(?:e|ed|es|ing)\s+(?:it\s+)?from\b|relocat\w*|held (?:it )?(?:at|in)|online|virtual|zoom|in[- ]person|place|zip)\b")


def relevant(ctx: Context, keywords: re.Pattern[str]) -> list[str]:
    """The sentences of the new text that talk about one attribute, with their neighbours.

    The host's own note is read first; text they forwarded only when the note does not say.
    """
    own = _relevant_in(ctx.note or ctx.body, keywords)
    return own if own or not ctx.note else _relevant_in(ctx.body, keywords)


def _relevant_in(text: str, keywords: re.Pattern[str]) -> list[str]:
    parts = sentences(text)
    chosen: list[str] = []
    for n, sentence in enumerate(parts):
        if keywords.search(sentence):
            for s in parts[max(0, n - 1) : n + 2]:
                if s not in chosen:
                    chosen.append(s)
    return chosen


# A number of hours, but not the hour of a clock time ("8:00 to 3:45", "until 3 pm").
_N = rf"(\d{{1,3}}(?:\.\d{{1,2}})?(?!\d|\.\d)|{NUMBER_WORD_PATTERN})(?!\s*(?::\d|[ap]\.?m\b))"
# Tried in order: the first is the most explicit way of giving a new number of hours.
HOURS_PATTERNS = tuple(re.compile(pattern.replace("{n}", _N), re.IGNORECASE) for pattern in (
    r"\bmake\s+(?:it|them|this|that|the hours?)\s+{n}\b",
    r"\b(?:hours?|hrs|pdus)\s*[:=]\s*{n}\b",
    r"(?:change|update|correct|fix|make)\s+(?:it|them|this|that|the hours?)?\s*to\s+{n}",
    r"(?:should be|is actually|was actually|actually (?:ran|was|is|took)|now takes|takes|it'?s|now)\s+(?:\w+\s+){0,2}?{n}\s*(?:hours?|hrs?)",
    r"{n}\s*(?:hours?|hrs?)\s+(?:instead of|not|rather than)\b",
    r"{n}\s*(?:hours?|hrs?)\b[^.]{0,30}?,?\s+not\s+\d",
    r"{n}\s*(?:hours?|hrs?)\s+total",
    r"\bto\s+{n}\s*(?:hours?|hrs?)?",
    r"(?:should be|be|is|are)\s+{n}\b(?!\s*(?:am|pm|/|-))",
    r"{n}[- ]hours?\b",
    r"{n}\s*(?:hours?|hrs?)",
))


_WORDS_OR_DIGITS = rf"(\d{{1,3}}|{NUMBER_WORD_PATTERN})"
# Hours as people say them, rewritten as digits before the patterns above are tried.
SPOKEN_HOURS = (
    (re.compile(r"\b(?:an|one) hour and a half\b", re.IGNORECASE), lambda m: "1.5 hours"),
    (re.compile(r"\bhalf an hour\b", re.IGNORECASE), lambda m: "0.5 hours"),
    (re.compile(rf"\b{_WORDS_OR_DIGITS} and (?:a half|one half)\s+hours?\b", re.IGNORECASE),
     lambda m: f"{_whole(m.group(1)) + Decimal('0.5')} hours"),
    (re.compile(rf"\b{_WORDS_OR_DIGITS} and (?:a quarter|three quarters)\s+hours?\b", re.IGNORECASE),
     lambda m: f"{_whole(m.group(1)) + (Decimal('0.75') if 'three' in m.group(0).lower() else Decimal('0.25'))} hours"),
    (re.compile(r"\b(\d{1,2})\s+([13])/([24])\b(?!/)"), lambda m: f"{int(m.group(1)) + Decimal(m.group(2)) / Decimal(m.group(3))}"),
    # Minutes become hours, never rounded up (1 hour = 1 PDU, and partial hours are not rounded up).
    (re.compile(r"\b(\d{2,3})\s*(?:minutes|mins?)\b", re.IGNORECASE),
     lambda m: f"{(Decimal(m.group(1)) / 60).quantize(Decimal('0.01'), rounding='ROUND_DOWN').normalize()} hours"),
    (re.compile(r"\b(?:an|one) hour\b", re.IGNORECASE), lambda m: "1 hour"),
)


def as_json_number(hours: Decimal) -> int | float:
    """5 as 5 and 5.5 as 5.5, as a ticket's fields and `pdubot parse --json` give them."""
    return float(hours) if hours % 1 else int(hours)


def _whole(word: str) -> Decimal:
    return Decimal(word) if word.isdigit() else Decimal(number_value(word) or 0)


def in_digits(text: str) -> str:
    """ "two and a half hours", "an hour and a half", "90 minutes", "6 3/4" as 2.5, 1.5, 1.5 and 6.75."""
    for pattern, digits in SPOKEN_HOURS:
        text = pattern.sub(digits, text)
    return text


def new_hours(ctx: Context, event: EventFacts) -> Decimal | None:
    text = in_digits(" ".join(relevant(ctx, ABOUT_HOURS)))
    for pattern in HOURS_PATTERNS:
        for match in pattern.finditer(text):
            value = _number(match.group(1)) if match.group(1)[0].isdigit() else _number(str(number_value(match.group(1))))
            if value is not None and value != event.hours:
                return value
    return None


# "the start date should be", "end date: ..." (the date itself follows).
LABELLED_DATES = {
    key: re.compile(rf"\b{label}(?:ing)? date\b[^.\d]{{0,40}}?(?:\bbe|\bto|\bis|:|\s)\s*(?=\d|[A-Z])", re.IGNORECASE)
    for label, key in (("start", "start_date"), ("end", "end_date"))
}
# Before a date: the words that give it as the new value ("should be", "moved it to"), not the old one.
UNTIL = re.compile(r"\b(?:through|thru|until|till)\s+(?:\w+,?\s+)?$")
GIVEN_AS_NEW = re.compile(rf"{NEW_VALUE}\s*(?:[\w,]+\s+){{0,5}}$")


_BARE_DAY = re.compile(r"^the \d{1,2}(?:st|nd|rd|th)$", re.IGNORECASE)


def in_events_month(mention: DateMention, event: EventFacts) -> DateMention:
    """ "Moving it to Tuesday the 15th" of a December 8 event is December 15, whatever month the email is
    sent in: a day given without its month is in the month the event is in."""
    if not _BARE_DAY.match(mention.text) or mention.start.month == event.start_date.month:
        return mention
    try:
        day = event.start_date.replace(day=mention.start.day)
    except ValueError:
        return mention
    return DateMention(day, day, mention.at, mention.text)


def new_dates(ctx: Context, event: EventFacts) -> dict[str, dt.date]:
    text = in_digits(" ".join(relevant(ctx, ABOUT_DATES)))  # so "6 3/4 hours" is not read as June 3 or March 4
    mentions = [in_events_month(m, event) for m in join_ranges(find_dates(text, ctx.sent_on), text)]
    changes: dict[str, dt.date] = {}
    for key, labelled_date in LABELLED_DATES.items():
        match = labelled_date.search(text)
        if match:
            after = [m for m in mentions if m.at >= match.end() - 1]
            if after:
                changes[key] = after[0].start if key == "start_date" else after[0].end
    if not changes:
        chosen = _new_range(text, mentions, event)
        if chosen is not None:
            changes = _range_changes(text, chosen, event)
    current = {"start_date": event.start_date, "end_date": event.end_date}
    return {k: v for k, v in changes.items() if v != current[k]}


def _new_range(text: str, mentions: list[DateMention], event: EventFacts) -> DateMention | None:
    """The date the host wants: after "should be"/"to"/"actually", or the one not already on the event."""
    previous_end = 0
    for mention in mentions:
        # Only the words since the date before it: the "to" of "Oct 2 to Oct 4, not Oct 1-3" is not Oct 1-3's.
        before = text[max(previous_end, mention.at - 40) : mention.at].lower()
        previous_end = mention.at + len(mention.text)
        if (GIVEN_AS_NEW.search(before) or UNTIL.search(before)) and not re.search(r"\bfrom\s*$", before):
            return mention
    for mention in reversed(mentions):
        after = text[mention.at + len(mention.text) : mention.at + len(mention.text) + 20].lower()
        # "ends May 28 rather than May 14", "was Oct 2 to Oct 4, not Oct 1-3"
        if "instead" in after or "rather than" in after or re.match(r"\W*not\b", after):
            return mention
    differing = [m for m in mentions if (m.start, m.end) != (event.start_date, event.end_date)]
    return differing[-1] if len(differing) == 1 else None


def _range_changes(text: str, mention: DateMention, event: EventFacts) -> dict[str, dt.date]:
    if mention.start != mention.end or event.start_date == event.end_date:
        return {"start_date": mention.start, "end_date": mention.end}
    around = text[max(0, mention.at - 40) : mention.at].lower()
    if re.search(r"\b(?:start|begin)", around):
        return {"start_date": mention.start}
    return {"end_date": mention.end}


OTHER_ATTRIBUTE = re.compile(r"\b(?:instructors?|presenters?|facilitators?|location|venue|dates?|hours|description|categor(?:y|ies))\W*$",
                             re.IGNORECASE)


# 'Please rename our February 10 "Follow-up Session" to "Repairing Harm Conferences"'
RENAME_QUOTED = re.compile(r"\brenam(?:e|ing)\b[^\"“\n]{0,80}[\"“][^\"”\n]{2,200}[\"”]\s+to\s+[\"“]([^\"”\n]{3,200})[\"”]", re.IGNORECASE)


# 'should be titled "Agricultural Literacy in the K-8 Classroom: Soil to Sandwich"'
TITLED_QUOTED = re.compile(r"\b(?:(?:should be|be|is now|to be|will be) (?:titled|called|named|listed as)|(?:so (?:that )?it|it should|to) reads?(?: just| simply| only| as)?"
                           r"|title should (?:now |also )?(?:read|be))"
                           r"\s*:?\s*[\"“]([^\"”\n]{3,200})[\"”]", re.IGNORECASE)


def new_title(ctx: Context, event: EventFacts) -> str | None:
    lines = [line.strip() for line in ctx.body.splitlines()]
    for n, line in enumerate(lines[:-1]):
        if re.search(r"(?:should (?:read|be)|change (?:it|the title) to|read as|new title( is)?|to:)\s*:?\s*$", line, re.IGNORECASE):
            following = next((l for l in lines[n + 1 :] if l), "")
            if following and len(following) < 200:
                return following.strip(" \"“”'")
    text = " ".join(relevant(ctx, ABOUT_TITLE))
    renamed = RENAME_QUOTED.search(ctx.body) or TITLED_QUOTED.search(ctx.body)
    if renamed:
        return renamed.group(1).strip()
    listing = re.search(r"\b(?:could|can|should|would) (?:the|it|its|our) (?:listing|title|name|event|session) (?:read|say|be)\s*:?\s*[\"“]([^\"”\n]{3,200})[\"”]", text, re.IGNORECASE)
    if listing:
        return listing.group(1).strip().rstrip(".")
    for match in re.finditer(rf"{NEW_VALUE}\s*:?\s*[\"“]([^\"”\n]{{3,200}})[\"”]", text, re.IGNORECASE):
        if OTHER_ATTRIBUTE.search(text[max(0, match.start() - 30) : match.start()]):
            continue  # 'Instructor should read "A and B"' gives the instructor, not a title
        return match.group(1).strip()
    plain = re.search(r"\b(?:(?:change|correct|update|fix) (?:the|its|our) (?:title|name) to:?|new title (?:is|should be|will be):?|title (?:is now|should now be):?|(?:title|typo)\b[^.]{0,60}?\b(?:it )?should (?:be|read):?)\s+([^\"“\n(]{3,200}?)(?:[?!]|\.\s|\.$|$)", text, re.IGNORECASE)
    if plain:
        return plain.group(1).strip()
    quoted = [q.strip() for q in _QUOTED.findall(text) if fuzz.ratio(fold(q), fold(event.title)) < 95]
    quoted = [q for q in quoted if len(q.split()) > 1 and not _is_misspelling(q, event.title)]
    return quoted[-1] if quoted and re.search(r"\btitle\b", text, re.IGNORECASE) else None


def _is_misspelling(quoted: str, title: str) -> bool:
    """A quoted fragment of the current (wrong) title is the old value, not the new one."""
    return fuzz.partial_ratio(fold(quoted), fold(title)) >= 90 and len(quoted) < len(title)


# 'please list the instructor as "Brett Ochsner and Celia Martínez"': the host gives the line verbatim.
LISTED_AS = re.compile(r"\b(?:list|make|put|set|change|show)\s+(?:the\s+)?(?:instructors?|presenters?|facilitators?)\s+"
                       r"(?:as|to(?: be)?|to read)?\s*:?\s*[\"“]([^\"”\n]{3,120})[\"”]", re.IGNORECASE)
# "the instructor should read Francine Couture and Tyson Three Irons", "was presented by Dr. X, not Y"
SHOULD_READ = re.compile(r"\b(?i:instructors?|presenters?|facilitators?)\s+(?i:should|needs to|to)\s+(?i:read|say|be|show)\s*:?\s*"
                         r"(?:[\"“]([^\"”\n]{2,120})[\"”]|((?:Dr\.?\s+)?[A-Z][^.,;\n\"”(]{2,120}?)\s*(?:[.,;\n(]|$))")
# "Jesse Ruiz from the Bitter Root Water Forum is stepping in as the instructor"
STEPPING_IN = re.compile(r"((?:Dr\.?\s+)?[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){1,3})(?:,?\s+(?:from|of)\s+[^.,;]{3,60}?)?,?\s+"
                         r"(?:is|will be|'s)\s+(?:stepping in|filling in|taking over|subbing)\s+(?:as|for)\s+(?:the\s+)?(?:instructor|presenter|facilitator)")
# "the instructor's last name is spelled wrong -- it says Vandehoof, should be Vanderhoof"
MISSPELT = re.compile(r"\bsays\s+([A-Z][\w'’-]+),?\s+(?:but\s+)?(?:it\s+)?should be\s+([A-Z][\w'’-]+)")
# "the presenter was me, Ruth Ann Galloway, not Thérèse Baptiste"
WAS_THE_INSTRUCTOR = re.compile(r"\b(?i:presenter|instructor|facilitator)s?\s+(?i:was|is|will be|should be)\s+(?:actually\s+)?(?:me,?\s+)?"
                                r"((?:Dr\.?\s+)?[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){1,3})")
PRESENTED_BY = re.compile(r"\b(?:was|were) (?:presented|taught|led|facilitated|co-led) by\s+((?:Dr\.?\s+)?[A-Z][\w'’-]+(?:\s+(?:[A-Z][\w'’-]+|(?:van|von|der|den|de|del|la|le|da|di)\b)){1,4})")


# 'change from "Margaret Pellham" to "Dr. Alan Reese"': the value after "to" is the new one.
FROM_TO_QUOTED = re.compile(r"\bfrom\s+[\"“][^\"”\n]{2,120}[\"”]\s+to\s+[\"“]([^\"”\n]{2,120})[\"”]", re.IGNORECASE)
# The ways a host names the new instructor outright, tried in this order.
INSTRUCTOR_GIVEN = (LISTED_AS, FROM_TO_QUOTED, SHOULD_READ, PRESENTED_BY, WAS_THE_INSTRUCTOR, STEPPING_IN)
# "put me as the instructor instead of Verna", "I ended up teaching it": the writer taught it.
ME_AS_INSTRUCTOR = re.compile(r"\b(?:put|list|make|have|show)\s+me\s+(?:down\s+)?as\s+(?:the\s+)?(?:instructor|presenter|facilitator)\b"
                              r"|\bI\s+(?:ended up|actually)\s+(?:teaching|presenting|leading|facilitating)\b"
                              r"|\bI(?:'ll| will) be (?:the )?(?:instructor|presenter|facilitator|teaching it|presenting it)\b", re.IGNORECASE)


def new_instructor(ctx: Context, event: EventFacts) -> str | None:
    chosen = relevant(ctx, ABOUT_INSTRUCTOR)
    text = " ".join(chosen)
    current = fold(event.instructor)
    sender = fold(ctx.sender_name)
    explicit = re.search(r"\bI(?:'ll| will|'m| am) be(?:ing)? the (?:instructor|presenter)\s*\(([^)]+)\)", text)
    if explicit:
        return explicit.group(1).strip()
    listed = next((match for pattern in INSTRUCTOR_GIVEN if (match := pattern.search(text))), None)
    if listed:
        return next(group for group in listed.groups() if group).strip()
    if ME_AS_INSTRUCTOR.search(text) and ctx.sender_name:
        return ctx.sender_name
    misspelt = MISSPELT.search(text)
    if misspelt and misspelt.group(1) in event.instructor:
        return event.instructor.replace(misspelt.group(1), misspelt.group(2))
    titled = re.findall(r"\b(?:should (?:say|read|be)|to|is)\s+((?:Dr|Mr|Mrs|Ms|Prof)\.?\s+[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){0,2})", text)
    if titled:
        return max(titled, key=lambda name: len(name.split())).strip()
    text = _capitalise_names(text)
    names = [n for n in person_names(text) if fuzz.ratio(fold(n), current) < 97]
    names = [n for n in names if not _is_an_institution(n) and fuzz.partial_ratio(fold(n), fold(event.title)) < 90]
    for name in names:
        for at in occurrences(name, text):
            before = text[max(0, at - 30) : at].lower()
            if re.search(r"(?:\bto|\bbe|\bis|\bwas|\bby|\()\s*$", before):
                return with_title(name, text)
    others = [n for n in names if fold(n) != sender]
    return with_title(others[0], text) if others else None


def with_title(name: str, text: str) -> str:
    """ "Dr. Alana Whitcomb led it": the title goes on the certificate with the name."""
    for at in occurrences(name, text):
        titled = _TITLE_BEFORE.search(text, max(0, at - 8), at)
        if titled:
            return f"{titled.group(1)} {name}"
    return name


_TITLE_BEFORE = re.compile(r"\b((?:Dr|Prof)\.?)\s+$")


def _about_instructor(ctx: Context, event: EventFacts) -> bool:
    """The host names the instructor's role, or writes a name close to the instructor's (a spelling fix)."""
    if re.search(r"\b(?:instructor|presenter|facilitator|taught|teach|lead|presenting)|\b(?:will|'ll|to|would|can|could) (?:now |also )?(?:present|facilitate)\b", ctx.body, re.IGNORECASE):
        return True
    current = fold(event.instructor)
    return bool(current) and any(70 <= fuzz.ratio(fold(n), current) < 97 for n in person_names(ctx.body))


def _capitalise_names(text: str) -> str:
    """Hosts typing fast write "from laura beckstrom to Shannon": give lower-case name pairs capitals."""
    def fix(match: re.Match[str]) -> str:
        return " ".join(w.capitalize() for w in match.group(0).split())

    return re.sub(r"(?<=\bfrom )[a-z]+ [a-z]+(?= to\b)", fix, text)


def _is_an_institution(name: str) -> bool:
    return bool(re.search(r"\b(?:Schools?|University|College|District|Center|Museum|Association)\b", name))


# "New description:" with the new text on the lines below, up to a blank line.
NEW_DESCRIPTION = re.compile(r"\b(?:(?:new|updated|corrected) description\s*:|replace (?:the|its|our) description with(?: the following)?\s*[:?.]?)\s*\n*(.{20,2000}?)(?:\n\s*\n|$)",
                             re.IGNORECASE | re.DOTALL)


def new_description(ctx: Context, event: EventFacts) -> str | None:
    text = " ".join(relevant(ctx, ABOUT_DESCRIPTION))
    if not text:
        return None
    given = NEW_DESCRIPTION.search(ctx.body)
    if given:
        return " ".join(given.group(1).split())
    quoted = [q.strip() for q in re.findall(r"[\"“]([^\"”]{20,2000})[\"”]", ctx.body)]
    quoted = [q for q in quoted if fuzz.ratio(fold(q), fold(event.description)) < 95]
    if quoted:
        return max(quoted, key=len)
    match = re.search(
        r"description\b.{0,200}?\b(?:should (?:be|read|say)|to read|replace it with|change it to|to)\b\s*:?\s*\n*(.{20,2000}?)(?:\n\s*\n|$)",
        ctx.body,
        re.IGNORECASE | re.DOTALL,
    )
    return match.group(1).strip().strip("\"“”") if match else None


@functools.lru_cache(maxsize=1024)  # the category vocabulary: a few dozen names
def whole_words(folded: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(folded)}\b")


for _name in STANDARD_CATEGORIES:
    whole_words(fold(_name))  # compiled now, not by the first message that names a category


def new_categories(ctx: Context, event: EventFacts, vocabulary: list[str]) -> list[str] | None:
    text = " ".join(relevant(ctx, ABOUT_CATEGORIES))
    if not text:
        return None
    folded = fold(text)
    named = [c for c in vocabulary if whole_words(fold(c)).search(folded)]
    named = [c for c in named if not any(c != o and fold(c) in fold(o) and fold(o) in folded for o in named)]
    if not named:
        return None
    current = list(event.categories or [])
    if re.search(r"\b(?:remove|take off|drop|uncheck)\b", text, re.IGNORECASE) and not re.search(r"should (?:just |only |now )?be", text, re.IGNORECASE):
        result = [c for c in current if c not in named]
    elif target := re.search(r"\b(?:should (?:just |only |now )?be|to be|change (?:it|them|the categories) to|categories (?:are|to|:))(.*)", text, re.IGNORECASE | re.DOTALL):
        # "Remove Technology. It should just be CTE and Science": the list after "should be" is the whole list.
        after = fold(target.group(1))
        listed = sorted((match.start(), c) for c in named if (match := whole_words(fold(c)).search(after)))
        result = [c for _, c in listed] or named  # in the order the host lists them
    elif all(c in current for c in named):
        result = named
    else:
        result = current + [c for c in named if c not in current]
    return result if sorted(result) != sorted(current) else None


LOCATION = re.compile(r"\b([A-Z][a-z]+(?:\s[A-Z][a-z]+){0,2}),?\s+(?:(MT|Montana)\b\.?,?\s*(\d{5})?|()(\d{5})\b)")


# "moved it from Wibaux to our office in Glendive": the town it left, and the town it went to.
MOVED_TOWN = re.compile(r"\bfrom\s+([A-Z][a-z]+(?: [A-Z][a-z]+)?)\s+to\s+(?:[\w' ]{0,40}?\b(?:in|at)\s+)?([A-Z][a-z]+(?: [A-Z][a-z]+)?)\b")


# "We were at the Bison Range in Moiese the whole day (zip 59824)"
TOWN_AND_ZIP = re.compile(r"\b(?:in|at|to)\s+([A-Z][a-z]+(?: [A-Z][a-z]+)?)\b(?:[^.]{0,40}?\bzip(?: code)?\W+|\s*\()(\d{5})\b")


def new_location(ctx: Context, event: EventFacts) -> str | None:
    chosen = relevant(ctx, ABOUT_LOCATION)
    text = " ".join(chosen)
    if not text:
        return None
    places = [m for m in LOCATION.finditer(text)]
    zip_only = re.search(r"\bzip(?: code)?\b[^.]{0,30}?\b(\d{5})\b", text, re.IGNORECASE)
    named = TOWN_AND_ZIP.search(text)
    if not places and named and fold(named.group(1)) != fold(event.city):
        return f"{named.group(1)}, MT {named.group(2)}"
    moved = MOVED_TOWN.search(text)
    if not places and moved and fold(moved.group(1)) == fold(event.city) and fold(moved.group(2)) != fold(event.city):
        # "from Helena to Great Falls (Heritage Inn), 59401": a Montana zip soon after the town is its zip
        near = re.search(r"\b(59\d{3})\b", text[moved.end() : moved.end() + 40])
        zip_code = zip_only.group(1) if zip_only else near.group(1) if near else ""
        return f"{moved.group(2)}, MT {zip_code}".strip()
    if not places and zip_only and zip_only.group(1) != event.zip and event.city:
        return f"{event.city}, {event.state or 'MT'} {zip_only.group(1)}"
    for match in reversed(places):
        city, zip_code = match.group(1), match.group(3) or match.group(5) or ""
        place = f"{city}, MT {zip_code}".strip()
        if fold(place) != fold(event.location):
            return place
    lower = re.search(r"\b(?:location|venue)\b[^.]{0,20}?\bto\s+([a-z][a-z ]{2,30}?)\s*,?\s*(?:mt\s*)?(\d{5})\b", text, re.IGNORECASE)
    if lower and fold(lower.group(1)) != fold(event.city):
        return f"{lower.group(1).strip().title()}, MT {lower.group(2)}"
    if re.search(r"\b(?:to|was|is|be|moved?|switched|changed?|went)\b.{0,30}\b(?:online|virtual|zoom)\b|\b(?:run|hold|offer)\b.{0,60}\bonline\b", text, re.IGNORECASE) and not event.online:
        return "Online"
    return None


def labelled_value(ctx: Context, *names: str) -> str | None:
    """A value a host set out as a form: "Correct instructor: Tunde Okafor", "New title | ...".

    A line that gives the value now listed ("Instructor now listed: ...") is the old value, not the new one.
    """
    words = "|".join(names)
    return labelled(ctx.body, rf"(?:correct|new|updated|right|corrected)\s+(?:{words})", rf"(?:{words})\s+should\s+be")


# A table of changes: which column holds the new value, and what each row's field is called.
NEW_VALUE_HEADING = re.compile(r"\b(?:should be|new|correct(?:ed|ion)?|change(?:d)? to|updated?|fix(?:ed)?|to)\b")
FIELD_HEADING = re.compile(r"\b(?:field|item|what|attribute|detail)\b")
OLD_VALUE_HEADING = re.compile(r"\b(?:current(?:ly)?|old|was|listed|now|existing|event)\b")
TABLE_FIELDS = (
    ("start_date", re.compile(r"\bstart")),
    ("end_date", re.compile(r"\bend")),
    ("dates", re.compile(r"\bdates?\b")),
    ("hours", re.compile(r"\b(?:hours?|hrs|pdus?)\b")),
    ("instructor", re.compile(r"\b(?:instructor|presenter|facilitator|speaker)")),
    ("description", re.compile(r"\bdescription\b")),
    ("categories", re.compile(r"\bcategor")),
    ("location", re.compile(r"\b(?:location|venue|city|place)\b")),
    ("title", re.compile(r"\b(?:title|name)\b")),
)


def tabled_changes(ctx: Context, event: EventFacts, vocabulary: list[str]) -> dict[str, object]:
    """Changes set out as a table ("Field | Currently | Should be"), each value in the registry's form."""
    changes: dict[str, object] = {}
    for row in table_rows(ctx.body):
        new_heading = next((h for h in row if NEW_VALUE_HEADING.search(h)), None)
        if new_heading is None or not row[new_heading]:
            continue
        # The field's name is under a heading such as "Field"; failing that, in any cell but the values.
        named = [cell for heading, cell in row.items() if FIELD_HEADING.search(heading)]
        labels = [c.lower() for c in named] or [
            cell.lower() for heading, cell in row.items() if heading != new_heading and not OLD_VALUE_HEADING.search(heading)
        ]
        key = next((key for key, pattern in TABLE_FIELDS if any(pattern.search(label) for label in labels)), None)
        if key is not None:
            changes.update(_table_value(ctx, event, key, row[new_heading], vocabulary))
    return changes


def _table_value(ctx: Context, event: EventFacts, key: str, cell: str, vocabulary: list[str]) -> dict[str, object]:
    if key == "hours":
        hours = _number(cell.split()[0]) if cell.split() else None
        return {"hours": as_json_number(hours)} if hours is not None and hours != event.hours else {}
    if key in ("start_date", "end_date", "dates"):
        found = join_ranges(find_dates(cell, ctx.sent_on), cell)
        if not found:
            return {}
        dates = {"start_date": found[0].start, "end_date": found[-1].end}
        wanted = dates if key == "dates" else {key: dates[key]}
        current = {"start_date": event.start_date, "end_date": event.end_date}
        return {k: v.isoformat() for k, v in wanted.items() if v != current[k]}
    if key == "location":
        place = LOCATION.search(cell)
        value = "Online" if re.search(r"\b(?:online|virtual|zoom)\b", cell, re.IGNORECASE) else (
            f"{place.group(1)}, MT {place.group(3) or place.group(5) or ''}".strip() if place else None)
        return {"location": value} if value and fold(value) != fold(event.location) else {}
    if key == "categories":
        named = [c for c in vocabulary if whole_words(fold(c)).search(fold(cell))]
        return {"categories": named} if named and sorted(named) != sorted(event.categories or []) else {}
    current = {"title": event.title, "instructor": event.instructor, "description": event.description}[key]
    return {key: cell} if fold(cell) != fold(current) else {}


CHANGES_ASKED = re.compile(r"\b(?:changes?|correct\w*|updates?|fix\w*|should (?:be|read)|please)\b", re.IGNORECASE)


def plain_labelled(ctx: Context, label: str, current: str) -> str | None:
    """ "Title: ..." set out under "two changes, please": a form line with a value other than the one on
    file. A line that repeats the value on file, or nearly, only says which event is meant. A line that
    says more ('Title: please change it to "..."') gives its quoted value."""
    line = labelled(ctx.body, label)
    if not line:
        return None
    quoted = _QUOTED.search(line)
    value = quoted.group(1).strip() if quoted else line
    if fuzz.ratio(fold(value), fold(current)) >= 90:
        return None
    at = ctx.body.find(line)
    return value if CHANGES_ASKED.search(ctx.body[max(0, at - 300) : at + len(line)]) else None


def labelled_person(ctx: Context, label: str, current: str) -> str | None:
    """ "Instructor: Kara Lindstrom taught it, not Bryce McCandless": the first name on the line."""
    line = plain_labelled(ctx, label, current)
    names = person_names(line) if line else []
    return names[0] if names and fuzz.ratio(fold(names[0]), fold(current)) < 90 else line


def extract(ctx: Context) -> Fields:
    event = ctx.event
    if event is None:
        return {"changes": {}, "self_service": False}
    vocabulary = sorted({c for e in ctx.host_events for c in (e.categories or [])} | set(STANDARD_CATEGORIES), key=len, reverse=True)
    changes: dict[str, object] = {}
    tabled = tabled_changes(ctx, event, vocabulary)
    values = {
        "title": labelled_value(ctx, "title") or plain_labelled(ctx, "title", event.title) or new_title(ctx, event),
        "instructor": labelled_value(ctx, "instructor", "presenter") or labelled_person(ctx, "instructor", event.instructor)
        or (new_instructor(ctx, event) if _about_instructor(ctx, event) else None),
        "description": new_description(ctx, event),
        "categories": new_categories(ctx, event, vocabulary),
        "location": new_location(ctx, event),
    }
    for key, value in values.items():
        if value:
            changes[key] = value
    hours = new_hours(ctx, event)
    if hours is not None:
        changes["hours"] = as_json_number(hours)
    changes.update({k: v.isoformat() for k, v in new_dates(ctx, event).items()})
    changes.update(tabled)  # a table says exactly which field takes which value
    return {"changes": changes, "self_service": event.end_date >= ctx.sent_on}


def missing(ctx: Context, fields: Fields) -> list[str]:
    needed = [] if ctx.host else ["host"]
    needed += [] if ctx.event else ["event"]
    return needed + ([] if fields.get("changes") or not ctx.event else ["changes"])


def describe(ctx: Context, fields: Fields) -> str:
    what = ", ".join(f"{k.replace('_', ' ')} → {v}" for k, v in (fields.get("changes") or {}).items())
    event = f"{ctx.event.title} ({ctx.event.event_id})" if ctx.event else "an event"
    return f"a correction to {event}" + (f": {what}." if what else ".")


def apply(session: Session, ticket: object, actor: str) -> Outcome:
    event = session.get(Event, ticket.event_id)  # type: ignore[attr-defined]
    changes = dict(ticket.fields.get("changes") or {})  # type: ignore[attr-defined]
    before = {key: _current(event, key) for key in changes}
    for key, value in changes.items():
        _set(event, key, value)
    after = {key: _current(event, key) for key in changes}
    summary = f"Updated {event.title} ({event.event_id}): " + ", ".join(f"{k.replace('_', ' ')} is now {after[k]}" for k in changes)
    return Outcome("event", event.event_id, "update", before, after, summary)


def _current(event: Event, key: str) -> object:
    value = event.location if key == "location" else getattr(event, key)
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    return value


def _set(event: Event, key: str, value: object) -> None:
    if key in ("start_date", "end_date"):
        setattr(event, key, dt.date.fromisoformat(str(value)))
    elif key == "hours":
        event.hours = Decimal(str(value)).quantize(Decimal("0.01"))  # the column keeps two places
    elif key == "location":
        _set_location(event, str(value))
    elif key == "categories":
        event.categories = list(value)  # type: ignore[arg-type]
    else:
        setattr(event, key, str(value))


def _set_location(event: Event, value: str) -> None:
    if fold(value) == "online":
        event.online, event.city, event.state, event.zip = True, "", "", ""
        return
    match = re.match(r"^\s*(.+?),\s*([A-Za-z]{2})\s*(\d{5})?\s*$", value)
    event.online = False
    if match:
        event.city, event.state, event.zip = match.group(1), match.group(2).upper(), match.group(3) or ""
    else:
        event.city = value


SPEC = KindSpec(
    kind=TicketKind.EVENT_EDIT,
    cues=CUES,
    extract=extract,
    missing=missing,
    describe=describe,
    about_event=True,
    approval=Approval.STAFF,
    apply=apply,
)
