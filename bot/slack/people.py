"""Who is acting in Slack: whether they are OPI staff (SLACK_STAFF), and how the audit log names them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300.0  # user group membership changes rarely; a few minutes is fresh enough
NAME_LENGTH = 40  # "slack:U123 (name)" must fit the 64-character assigned_to column


class StaffDirectory:
    """SLACK_STAFF: user IDs (U..., W...) and user group IDs (S...) whose members may act.

    Membership of a group is read with usergroups.users.list and kept for a few minutes. When Slack
    cannot be asked, the last known membership is used; with none, nobody from that group may act.
    """

    def __init__(self, client: AsyncWebClient, entries: Iterable[str], cache_seconds: float = GROUP_CACHE_SECONDS):
        self.client = client
        entries = [e.strip() for e in entries if e.strip()]
        self.users = frozenset(e for e in entries if not e.startswith("S"))
        self.groups = tuple(e for e in entries if e.startswith("S"))
        self.cache_seconds = cache_seconds
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def allows(self, user_id: str) -> bool:
        if user_id in self.users:
            return True
        for group in self.groups:
            if user_id in await self.members(group):
                return True
        return False

    async def members(self, group: str) -> frozenset[str]:
        cached = self._members.get(group)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            logger.warning("cannot read the members of user group %s: %s", group, exc.response.get("error"))
            return cached[1] if cached is not None else frozenset()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.warning("cannot reach Slack for user group %s: %s", group, type(exc).__name__)
            return cached[1] if cached is not None else frozenset()
        members = frozenset(response.get("users") or [])
        self._members[group] = (time.monotonic(), members)
        return members


class Names:
    """Display names of Slack users for the audit log, looked up once with users.info."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._names: dict[str, str] = {}

    async def actor(self, user_id: str, hint: str = "") -> str:
        """``slack:U123 (Ann)``: the ID is what proves who it was, the name is for people reading the log."""
        name = self._names.get(user_id) or await self._lookup(user_id) or hint
        return f"slack:{user_id} ({name[:NAME_LENGTH]})" if name else f"slack:{user_id}"

    async def _lookup(self, user_id: str) -> str:
        try:
            response = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            logger.info("users.info for %s failed: %s", user_id, exc.response.get("error"))
            return ""
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.info("users.info for %s: Slack unreachable (%s)", user_id, type(exc).__name__)
            return ""
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name")
        name = name or ""
        if name:
            self._names[user_id] = name
        return name
