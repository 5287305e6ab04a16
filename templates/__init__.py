"""Jinja2 templates for email, Slack and PDFs. HTML is always autoescaped; plain text is not escaped."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).parent


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml"), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_pair(template: str, /, **context: Any) -> tuple[str, str]:
    """The plain-text and HTML bodies of the email template ``email/<template>``.

    A template with no HTML twin gets its text set in the shared HTML layout, paragraph by paragraph and
    escaped, so the two bodies never say different things.
    """
    text = render(f"email/{template}.txt", **context)
    if (TEMPLATE_DIR / "email" / f"{template}.html").exists():
        return text, render(f"email/{template}.html", **context)
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return text, render("email/paragraphs.html", paragraphs=paragraphs, **context)
