"""Putting text from email into Slack safely: escaped so nothing can ping, mention or link, and folded when long."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

CARD_TEXT_LIMIT = 1500
THREAD_TEXT_LIMIT = 3000
ELLIPSIS = "\u2026"


def escape(text: str) -> str:
    """Slack's three control characters (its "Formatting text" guide), so ``<!channel>``, ``<@U123>`` and
    ``<https://x|y>`` from an email show as typed instead of pinging the channel or hiding a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fold(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, so one long email cannot flood the channel."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def quoted(text: str, limit: int) -> str:
    """Escaped, folded text as a Slack block quote."""
    body = escape(fold(text, limit)) or "(no text)"
    # A bare ">" opening a line is Slack's quote marker; it cannot start a control sequence without a "<".
    return "\n".join(f"> {line}" if line else ">" for line in body.splitlines())


def when(moment: dt.datetime | None, tz: ZoneInfo) -> str:
    """``Nov 3, 10:42 MST`` in the service's time zone."""
    if moment is None:
        return ""
    local = moment.astimezone(tz)
    return f"{local:%b} {local.day}, {local:%H:%M %Z}"


def age(since: dt.datetime, now: dt.datetime) -> str:
    """``45 min``, ``5 h`` or ``3 days``: how long something has waited."""
    minutes = max(int((now - since).total_seconds() // 60), 0)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"
