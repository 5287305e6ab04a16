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
    """The plain-text and HTML bodies of the email template ``email/<template>``."""
    return render(f"email/{template}.txt", **context), render(f"email/{template}.html", **context)
