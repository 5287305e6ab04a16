"""Building the staff Slack app and connecting it: Socket Mode, or POST /slack/events on the HTTP server.

Socket Mode (SLACK_APP_TOKEN) needs no public URL, which suits a service behind the state firewall.
Otherwise Slack posts to /slack/events, and Bolt refuses any request whose signature does not match
SLACK_SIGNING_SECRET or whose timestamp is more than five minutes off (a replay).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from bot.slack.deliverer import SlackDeliverer
from bot.slack.desk import Desk
from bot.slack.listeners import register
from bot.slack.people import Names, StaffDirectory

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
BOLT_APP = web.AppKey("slack_bolt_app", AsyncApp)
SOCKET_CHECK_SECONDS = 15.0


class Mode(str, enum.Enum):
    OFF = "off"  # no SLACK_BOT_TOKEN: posts wait in the outbox, staff use `pdubot tickets`
    SOCKET = "socket"
    HTTP = "http"


def mode_of(settings: Settings) -> Mode:
    if settings.slack_bot_token is None or not settings.slack_channel:
        return Mode.OFF
    return Mode.SOCKET if settings.slack_app_token is not None else Mode.HTTP


def web_client(settings: Settings, **options: object) -> AsyncWebClient:
    """A Web API client for SLACK_API_URL (tests point it at a local fake)."""
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return AsyncWebClient(token=token, base_url=base_url, **options)  # type: ignore[arg-type]


def build_app(settings: Settings, sessions: sessionmaker[Session], on_change: Callable[[], None]) -> AsyncApp:
    """The Bolt app with every listener registered."""
    client = web_client(settings)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = AsyncApp(client=client, signing_secret=secret, process_before_response=False)
    desk = Desk(sessions=sessions, policy=settings.policy, channel=settings.slack_channel,
                staff=StaffDirectory(client, settings.slack_staff), names=Names(client), on_change=on_change)
    register(app, desk)
    return app


def make_deliverer(settings: Settings, sessions: sessionmaker[Session]) -> SlackDeliverer:
    """The Slack deliverer, with one reused HTTP session (call inside the running loop; ``close`` it after)."""
    # No retries inside the client: the outbox retries with its own backoff and keeps the order.
    client = web_client(settings, retry_handlers=[], timeout=15, session=aiohttp.ClientSession())
    return SlackDeliverer(sessions, client, settings.slack_channel, settings.policy.timezone)


def delivery_step(
    deliverer: SlackDeliverer, wake: asyncio.Event, poll_seconds: float
) -> Callable[[], Awaitable[float]]:
    """One turn of the Slack delivery loop: post what is due, then sleep until woken or the poll interval.

    The wake-up is cleared before looking, not after: one that arrives while the deliverer looks (a row
    queued, or the service stopping) then ends the sleep instead of being lost until the next poll.
    """
    async def step() -> float:
        wake.clear()
        if await deliverer.deliver_due() and not deliverer.drained:
            return 0  # it stopped before the end of the queue: look again at once
        try:
            await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
        except TimeoutError:
            pass
        return 0

    return step


async def slack_events(request: web.Request) -> web.Response:
    bolt_response = await request.app[BOLT_APP].async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(bolt_response)


def mount_events(web_app: web.Application, bolt_app: AsyncApp) -> None:
    """Serve Slack's HTTP mode (events, interactivity, the slash command) at POST /slack/events."""
    web_app[BOLT_APP] = bolt_app
    web_app.router.add_post(EVENTS_PATH, slack_events)


def can_serve_http(settings: Settings) -> bool:
    if settings.slack_signing_secret is None:
        logger.error("Slack HTTP mode needs SLACK_SIGNING_SECRET; %s is not served", EVENTS_PATH)
        return False
    return True


class SocketMode:
    """The Socket Mode connection, opened (and reopened after a failed start) by the service's loop."""

    def __init__(self, bolt_app: AsyncApp, app_token: str) -> None:
        self.handler = AsyncSocketModeHandler(bolt_app, app_token)
        self.connected = False

    async def step(self) -> float:
        """Connect when not connected; the client itself reconnects a connection that drops later."""
        if not self.connected:
            try:
                await self.handler.connect_async()
            except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                logger.warning("Socket Mode cannot connect yet: %s", type(exc).__name__)
                return SOCKET_CHECK_SECONDS
            self.connected = True
            logger.info("Slack Socket Mode connected")
        return SOCKET_CHECK_SECONDS

    async def close(self) -> None:
        if self.connected:
            await self.handler.close_async()
