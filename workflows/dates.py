"""Find the dates a host writes ("Oct 14", "9/24/2026 - 9/25/2026", "January 8-9", "1 October 2025").

A date written without a year gets the year that puts it nearest the day the message was sent, since hosts
write about events that just happened or are coming up soon.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from workflows.literals import lowered, may_match, required_words

MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
YEAR = r"(?:19|20)\d\d"
_PATTERNS = (
    # 2026-10-14
    re.compile(rf"\b(?P<iso>{YEAR}-[01]\d-[0-3]\d)\b"),
    # October 16-17, 2026 / Oct 9 - 10 / Sept. 24 and 25 / January 8-9, 2027
    re.compile(
        rf"\b(?P<month>{MONTH})\.?\s+(?P<day>{DAY})(?:\s*(?:-|–|to|and|&|through|thru)\s*(?P<day2>{DAY})\b(?!\s*/))?"
        rf"(?:,?\s+(?P<year>{YEAR}))?\b",
        re.IGNORECASE,
    ),
    # 1 October 2025 / 30 September 2026
    re.compile(rf"\b(?P<day>{DAY})\s+(?P<month>{MONTH})\.?(?:,?\s+(?P<year>{YEAR}))?\b", re.IGNORECASE),
    # 9/24/2026 or 9/24/26 or 9/24 (US order)
    re.compile(r"\b(?P<m>1[0-2]|0?[1-9])/(?P<d>[12]\d|3[01]|0?[1-9])(?:/(?P<y>(?:20)?\d\d))?\b"),
    # "on the 14th", "Saturday the 24th": a day of the month nearest the day the message was sent
    re.compile(r"\b(?:on|the)\s+(?P<ordinal>[12]\d|3[01]|[1-9])(?:st|nd|rd|th)\b", re.IGNORECASE),
    # yesterday, today, tomorrow
    re.compile(r"\b(?P<relative>yesterday|today|tonight|tomorrow)\b", re.IGNORECASE),
    # "last Thursday", "this past Monday", "Friday's training": the most recent such day
    re.compile(
        r"\b(?:(?P<when>last|this past|next|this coming)\s+)?(?P<weekday>monday|tuesday|wednesday|thursday|friday|saturday|sunday)(?:'s)?\b",
        re.IGNORECASE,
    ),
)
MONTH_NUMBERS = {name: n for n, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
# The words each pattern cannot match without: a text lacking them is not searched with it.
_NEEDS = tuple(required_words(pattern) for pattern in _PATTERNS)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
RELATIVE_DAYS = {"yesterday": -1, "today": 0, "tonight": 0, "tomorrow": 1}


@dataclass(frozen=True)
class DateMention:
    start: dt.date
    end: dt.date
    at: int  # character offset in the text, so callers can read the words around it
    text: str


def nearest_year(month: int, day: int, sent_on: dt.date) -> dt.date | None:
    candidates = []
    for year in (sent_on.year - 1, sent_on.year, sent_on.year + 1):
        try:
            candidates.append(dt.date(year, month, day))
        except ValueError:
            continue
    return min(candidates, key=lambda d: abs((d - sent_on).days), default=None)


def nearest_day_of_month(day: int, sent_on: dt.date) -> dt.date | None:
    """"The 14th" is this month's or a neighbouring month's 14th, whichever is nearest the sending day."""
    candidates = []
    for shift in (-1, 0, 1):
        month_index = sent_on.month - 1 + shift
        year, month = sent_on.year + month_index // 12, month_index % 12 + 1
        try:
            candidates.append(dt.date(year, month, day))
        except ValueError:
            continue
    return min(candidates, key=lambda d: abs((d - sent_on).days), default=None)


def weekday_date(weekday: str, when: str, sent_on: dt.date) -> dt.date:
    """"last Thursday" is the most recent Thursday before the sending day; "next Thursday" the first after.

    A bare weekday is read as the most recent one (hosts mostly write about what already happened).
    """
    target = WEEKDAYS.index(weekday)
    if when in ("next", "this coming"):
        return sent_on + dt.timedelta(days=(target - sent_on.weekday() - 1) % 7 + 1)
    back = (sent_on.weekday() - target) % 7
    if when in ("last", "this past") and back == 0:
        back = 7
    return sent_on - dt.timedelta(days=back)


def _on(month: int, day: int, year: int | None, sent_on: dt.date) -> dt.date | None:
    if year is None:
        return nearest_year(month, day, sent_on)
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _day(value: str) -> int:
    return int(re.sub(r"\D", "", value))


def _month_number(name: str) -> int:
    """"Sept", "October", "dec" → 9, 10, 12: every name ``MONTH`` matches starts with its abbreviation."""
    return MONTH_NUMBERS[name[:3].casefold()]  # casefold: IGNORECASE also lets "ſ" match "s"


def find_dates(text: str, sent_on: dt.date) -> list[DateMention]:
    """Every date or date range in ``text``, in the order written, without overlaps."""
    found: list[DateMention] = []
    taken: list[range] = []
    words = lowered(text)
    for pattern, needs in zip(_PATTERNS, _NEEDS):  # most specific first, so a written date wins over its weekday
        if not may_match(needs, words):
            continue
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < t.stop and t.start < span.stop for t in taken):
                continue
            mention = _mention(match, sent_on)
            if mention is not None:
                found.append(mention)
                taken.append(span)
    return _without_restated_weekdays(sorted(found, key=lambda m: m.at), text)


def _without_restated_weekdays(mentions: list[DateMention], text: str) -> list[DateMention]:
    """"Tuesday 10/13" and "Oct 13 (Tuesday)" name one day: the written date stands, the weekday goes."""
    kept: list[DateMention] = []
    for n, mention in enumerate(mentions):
        if mention.text.lower().rstrip("'s") in WEEKDAYS or re.match(r"(?i)(?:last|this past|next|this coming)\s", mention.text):
            neighbours = mentions[max(0, n - 1) : n] + mentions[n + 1 : n + 2]
            if any(abs(other.at - (mention.at + len(mention.text))) <= 3 or abs(mention.at - (other.at + len(other.text))) <= 3
                   for other in neighbours):
                continue
        kept.append(mention)
    return kept


def _mention(match: re.Match[str], sent_on: dt.date) -> DateMention | None:
    groups = match.groupdict()
    if groups.get("relative"):
        day = sent_on + dt.timedelta(days=RELATIVE_DAYS[groups["relative"].lower()])
        return DateMention(day, day, match.start(), match.group(0))
    if groups.get("weekday"):
        day = weekday_date(groups["weekday"].lower(), (groups.get("when") or "").lower(), sent_on)
        return DateMention(day, day, match.start(), match.group(0))
    if groups.get("ordinal"):
        day = nearest_day_of_month(int(groups["ordinal"]), sent_on)
        return DateMention(day, day, match.start(), match.group(0)) if day else None
    if groups.get("iso"):
        day = dt.date.fromisoformat(groups["iso"])
        return DateMention(day, day, match.start(), match.group(0))
    if groups.get("month"):
        month = _month_number(groups["month"])
        year = int(groups["year"]) if groups.get("year") else None
        start = _on(month, _day(groups["day"]), year, sent_on)
        end = _on(month, _day(groups["day2"]), year or (start.year if start else None), sent_on) if groups.get(
            "day2"
        ) else start
    else:
        year_text = groups.get("y")
        year = (2000 + int(year_text) if len(year_text) == 2 else int(year_text)) if year_text else None
        start = end = _on(int(groups["m"]), int(groups["d"]), year, sent_on)
    if start is None or end is None or end < start:
        return None
    return DateMention(start, end, match.start(), match.group(0))


def join_ranges(mentions: list[DateMention], text: str) -> list[DateMention]:
    """Join "9/24/2026 - 9/25/2026" and "1 October 2025 to 30 September 2026" into single ranges.

    "from Oct 9 to Oct 30" is left as two dates: after "from", "to" names a new date, not a range.
    """
    joined: list[DateMention] = []
    for mention in mentions:
        if joined:
            previous = joined[-1]
            between = text[previous.at + len(previous.text) : mention.at]
            single_days = previous.start == previous.end and mention.start == mention.end
            after_from = re.search(r"\bfrom\s*$", text[max(0, previous.at - 6) : previous.at], re.IGNORECASE)
            joins = re.fullmatch(r"\s*(-|–|to|through|thru|until)\s*", between, re.IGNORECASE)
            if joins and single_days and not after_from and previous.end <= mention.start:
                joined[-1] = DateMention(previous.start, mention.end, previous.at, text[previous.at : mention.at + len(mention.text)])
                continue
        joined.append(mention)
    return joined
