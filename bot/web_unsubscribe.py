"""The one-click unsubscribe endpoint of RFC 8058: POST /unsubscribe/{token} leaves the list at once.

No login, cookies or redirects: mailbox providers POST ``List-Unsubscribe=One-Click`` to the URL from
the List-Unsubscribe header and expect a plain success. A GET (a person clicking the link in the body)
only shows a page with a button that sends that POST, because link scanners fetch URLs with GET and
must not unsubscribe anyone (RFC 8058 section 3.2).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from markupsafe import escape
from sqlalchemy.orm import Session, sessionmaker

from workflows.unsubscribe import read_token, unsubscribe

logger = logging.getLogger(__name__)

SECRET = web.AppKey("unsubscribe_secret", bytes)
UNSUB_SESSIONS = web.AppKey("unsubscribe_sessions", sessionmaker)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family: Arial, Helvetica, sans-serif; max-width: 560px; margin: 40px auto; color: #1d2733;">
<h1 style="font-size: 22px;">{title}</h1>
{body}
<p style="color: #5b6673; font-size: 13px;">Professional Learning, Montana Office of Public Instruction</p>
</body></html>
"""


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(text=PAGE.format(title=escape(title), body=body), status=status, content_type="text/html")


def leave_list(sessions: sessionmaker[Session], address: str) -> bool:
    with sessions() as session:
        changed = unsubscribe(session, address, "one-click unsubscribe")
        session.commit()
        return changed


async def confirm_page(request: web.Request) -> web.Response:
    address = read_token(request.app[SECRET], request.match_info["token"])
    if address is None:
        return page("Link not recognised", "<p>This unsubscribe link is not valid.</p>", status=404)
    form = (f"<p>Stop sending OPI Professional Learning mailings to <strong>{escape(address)}</strong>?</p>"
            '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit" style="font-size: 16px; padding: 8px 18px;">Unsubscribe</button></form>')
    return page("Unsubscribe", form)


async def one_click(request: web.Request) -> web.Response:
    address = read_token(request.app[SECRET], request.match_info["token"])
    if address is None:
        logger.info("unsubscribe refused: a forged or damaged token")
        return page("Link not recognised", "<p>This unsubscribe link is not valid. Nothing was changed.</p>",
                    status=404)
    await request.read()  # the body is "List-Unsubscribe=One-Click"; the token alone decides
    await asyncio.to_thread(leave_list, request.app[UNSUB_SESSIONS], address)
    return page("You are unsubscribed",
                f"<p>{escape(address)} will receive no more OPI Professional Learning mailings.</p>")


def register(app: web.Application, sessions: sessionmaker[Session], secret: bytes) -> None:
    """Mount the unsubscribe routes on the service's HTTP app."""
    app[SECRET] = secret
    app[UNSUB_SESSIONS] = sessions
    app.router.add_get("/unsubscribe/{token}", confirm_page)
    app.router.add_post("/unsubscribe/{token}", one_click)
