"""The HTTP server: /healthz now; the Slack endpoints and the unsubscribe POST mount here too."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from storage.enums import OutboxStatus
from storage.outbox import OutboxItem

logger = logging.getLogger(__name__)

SESSIONS = web.AppKey("sessions", sessionmaker)


def health(sessions: sessionmaker[Session]) -> dict[str, object]:
    """Database reachable, and how much the outbox holds that has not gone out."""
    with sessions() as session:
        rows = session.execute(
            sa.select(OutboxItem.status, sa.func.count(OutboxItem.id))
            .where(OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED]))
            .group_by(OutboxItem.status)
        ).all()
    counts = {status.value: count for status, count in rows}
    return {"status": "ok", "database": "ok", "outbox": counts}


async def healthz(request: web.Request) -> web.Response:
    try:
        body = await asyncio.to_thread(health, request.app[SESSIONS])
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("health check: database unreachable: %s", type(exc).__name__)
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response(body)


def make_web_app(sessions: sessionmaker[Session]) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SESSIONS] = sessions
    app.router.add_get("/healthz", healthz)
    return app


async def start_web(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logger.info("HTTP listening on %s:%s", host, port)
    return runner
