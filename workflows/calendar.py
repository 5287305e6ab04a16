"""OPI's calendar: business days, the first business day of a month, and the third-Tuesday Collaborative call."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

TUESDAY = 1
CALL_START = dt.time(15, 30)  # 3:30-4:30 p.m. Mountain, third Tuesday (OPI's provider page)
CALL_END = dt.time(16, 30)


def is_business_day(day: dt.date) -> bool:
    """Monday to Friday. OPI's holidays are not known to the service, so they count as business days."""
    return day.weekday() < 5


def first_business_day(year: int, month: int) -> dt.date:
    day = dt.date(year, month, 1)
    while not is_business_day(day):
        day += dt.timedelta(days=1)
    return day


def third_tuesday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (TUESDAY - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


def call_window(year: int, month: int, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The month's Network Collaborative call as aware datetimes; the zone decides MST or MDT for that date."""
    day = third_tuesday(year, month)
    return dt.datetime.combine(day, CALL_START, tz), dt.datetime.combine(day, CALL_END, tz)


def call_reminder_day(year: int, month: int) -> dt.date:
    """Subscribers hear about the call the day before it (a Monday)."""
    return third_tuesday(year, month) - dt.timedelta(days=1)


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def previous_month(day: dt.date) -> tuple[int, int]:
    first = day.replace(day=1) - dt.timedelta(days=1)
    return first.year, first.month


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The first instant of the month and of the next, in ``tz``."""
    start = dt.datetime(year, month, 1, tzinfo=tz)
    nxt = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return start, nxt

