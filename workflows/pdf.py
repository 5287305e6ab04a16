"""PDF documents: Jinja2 templates under templates/pdf/, laid out and printed by WeasyPrint."""

from __future__ import annotations

from typing import Any

from templates import TEMPLATE_DIR, render


def render_pdf(template: str, /, **context: Any) -> bytes:
    """The PDF of ``templates/pdf/<template>.html``; its stylesheets are found beside it."""
    # Imported here: loading Pango takes a second, and most commands never print anything.
    from weasyprint import HTML

    html = render(f"pdf/{template}.html", **context)
    return HTML(string=html, base_url=str(TEMPLATE_DIR / "pdf")).write_pdf()
