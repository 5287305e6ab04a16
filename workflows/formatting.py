"""How dates and PDUs are written in emails, Slack posts and PDFs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal


def format_date(day: dt.date) -> str:
    """``Oct 14, 2026``."""
    return f"{day:%b} {day.day}, {day.year}"


def format_dates(start: dt.date, end: dt.date) -> str:
    """``Oct 14, 2026``, ``Oct 14 - Oct 16, 2026``, or ``Dec 1, 2025 - Nov 30, 2026`` across years."""
    if start == end:
        return format_date(start)
    if start.year == end.year:
        return f"{start:%b} {start.day} - {format_date(end)}"
    return f"{format_date(start)} - {format_date(end)}"


def format_pdus(hours: Decimal) -> str:
    """PDUs as recorded: 1 hour = 1 PDU, and partial hours are never rounded up (OPI rule), so 3.50 is "3.5"."""
    value = Decimal(hours)
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")
