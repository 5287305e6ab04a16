"""A fake Slack for tests: its Web API on a loopback port, and the signed requests Slack sends to the app.

The Web API fake records every call (method and arguments, from the query string, a form or JSON),
answers as Slack does (chat.postMessage returns a ts and the channel, files.info and url_private serve the
files people shared, and so on), and can be scripted to answer the next calls with a 429 and Retry-After,
a 5xx page, or an API error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

from tests.servers import free_port, loop_thread, run_on

BOT_USER = "UBOT0000"
TICKET_CARD = re.compile(r"PDU-\d+\b")  # how the app opens a ticket card's text
TEAM = "T0PDU0001"
CHANNEL = "C0STAFF01"
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    at: float  # time.monotonic() when it arrived
    result: dict[str, Any] = field(default_factory=dict)  # what the fake answered

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.args.get("_error")


@dataclass
class Scripted:
    """An answer for the next matching calls instead of the normal one."""

    remaining: int
    status: int
    error: str = ""
    retry_after: int | None = None
    methods: frozenset[str] | None = None  # None: any Web API method


@dataclass
class FakeSlack:
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    script: list[Scripted] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)  # user group ID -> member IDs
    names: dict[str, str] = field(default_factory=dict)  # user ID -> display name
    uploads: dict[str, bytes] = field(default_factory=dict)
    shared: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)  # file ID -> (file, bytes)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts -> the latest arguments
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    sockets: list[web.WebSocketResponse] = field(default_factory=list)  # Socket Mode connections
    loop: asyncio.AbstractEventLoop | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, key: str = "r1") -> str:
        return f"http://127.0.0.1:{self.port}/respond/{key}"

    # Scripting.

    def fail_next(self, count: int, status: int = 500, methods: set[str] | None = None) -> None:
        """The next ``count`` calls get an HTML error page with ``status``, as when Slack is down."""
        self.script.append(Scripted(count, status, methods=frozenset(methods) if methods else None))

    def rate_limit_next(self, count: int, retry_after: int = 1, methods: set[str] | None = None) -> None:
        self.script.append(Scripted(count, 429, "ratelimited", retry_after, frozenset(methods) if methods else None))

    def error_next(self, count: int, error: str, methods: set[str] | None = None) -> None:
        """The next ``count`` calls answer HTTP 200 with ``{"ok": false, "error": error}``."""
        self.script.append(Scripted(count, 200, error, methods=frozenset(methods) if methods else None))

    def share(self, name: str, data: bytes, user_id: str) -> dict[str, Any]:
        """A file someone shared: the object files.info and a message event give, its bytes at url_private."""
        file_id = f"F{next(self._ts):08d}"
        url = f"http://127.0.0.1:{self.port}/files-pri/{TEAM}-{file_id}/{urllib.parse.quote(name)}"
        file = {"id": file_id, "name": name, "title": name, "size": len(data), "user": user_id,
                "mimetype": "text/plain", "filetype": "markdown" if name.endswith(".md") else "text",
                "url_private": url, "url_private_download": f"{url}?download=1"}
        self.shared[file_id] = (file, data)
        return file

    # What was called.

    def calls_to(self, method: str, ok_only: bool = True) -> list[Call]:
        return [c for c in list(self.calls) if c.method == method and (c.ok or not ok_only)]

    def posts(self) -> list[Call]:
        """Successful chat.postMessage calls, in order."""
        return self.calls_to("chat.postMessage")

    def cards(self) -> list[Call]:
        """Ticket cards: top-level posts that open with the ticket's number.

        Channel notices (the digest, the monthly report on the first business day) are top-level posts too; a
        test counting cards must not depend on which day of the month it runs.
        """
        return [c for c in self.channel_posts() if TICKET_CARD.match(str(c.args.get("text", "")))]

    def channel_posts(self) -> list[Call]:
        return [c for c in self.posts() if not c.args.get("thread_ts")]

    def ephemerals(self) -> list[Call]:
        return self.calls_to("chat.postEphemeral")

    # The server.

    def app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self.handle)
        app.router.add_post("/upload/{file_id}", self.upload)
        app.router.add_get("/files-pri/{key}/{name}", self.download)
        app.router.add_post("/respond/{key}", self.respond)
        app.router.add_get("/socket", self.socket)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await read_args(request)
        scripted = self._take_script(method)
        if scripted is not None:
            return self._scripted(method, args, scripted)
        body = self.answer(method, args)
        self._record(method, {**args, **({"_error": body["error"]} if not body.get("ok") else {})}, 200, body)
        return web.json_response(body)

    def _take_script(self, method: str) -> Scripted | None:
        with self._lock:
            for entry in self.script:
                if entry.remaining > 0 and (entry.methods is None or method in entry.methods):
                    entry.remaining -= 1
                    return entry
        return None

    def _scripted(self, method: str, args: dict[str, Any], entry: Scripted) -> web.Response:
        self._record(method, {**args, "_error": entry.error or f"HTTP {entry.status}"}, entry.status)
        if entry.status >= 500:
            return web.Response(status=entry.status, text="<html><body>Slack is having trouble</body></html>",
                                content_type="text/html")
        headers = {"Retry-After": str(entry.retry_after)} if entry.retry_after is not None else {}
        return web.json_response({"ok": False, "error": entry.error}, status=entry.status, headers=headers)

    def _record(self, method: str, args: dict[str, Any], status: int, result: dict[str, Any] | None = None) -> None:
        self.calls.append(Call(method, args, status, time.monotonic(), result or {}))

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "url": "https://opi.slack.com/", "team": "OPI", "user": "pdubot", "team_id": TEAM,
                    "user_id": BOT_USER, "bot_id": "BBOT0000"}
        if method == "chat.postMessage":
            ts = f"{1700000000 + next(self._ts)}.000100"
            self.messages[ts] = args
            return {"ok": True, "channel": args.get("channel"), "ts": ts,
                    "message": {"text": args.get("text"), "ts": ts, "bot_id": "BBOT0000"}}
        if method == "chat.update":
            if args.get("ts") not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[args["ts"]] = args
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}
        if method in ("views.open", "views.publish", "views.update", "views.push"):
            return {"ok": True, "view": {"id": f"V{next(self._ts):08d}", **(args.get("view") or {})}}
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.groups.get(args.get("usergroup", ""), [])}
        if method == "users.info":
            user = args.get("user", "")
            name = self.names.get(user, "")
            return {"ok": True, "user": {"id": user, "name": name.lower(), "real_name": name,
                                         "profile": {"display_name": name, "real_name": name}}}
        if method == "files.info":
            shared = self.shared.get(args.get("file", ""))
            return {"ok": True, "file": shared[0]} if shared else {"ok": False, "error": "file_not_found"}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):08d}"
            return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = json.loads(args.get("files") or "[]")
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        return {"ok": False, "error": "unknown_method"}

    async def upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        self._record("upload", {"file_id": request.match_info["file_id"]}, 200)
        return web.Response(text=f"OK - {len(self.uploads[request.match_info['file_id']])}", content_type="text/plain")

    async def download(self, request: web.Request) -> web.Response:
        """url_private: the file for the bot token, and, as Slack does without it, a sign-in page."""
        file_id = request.match_info["key"].removeprefix(f"{TEAM}-")
        authorized = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        self._record("download", {"file_id": file_id, "authorized": authorized}, 200)
        if not authorized:
            return web.Response(text="<html><body>Sign in to Slack</body></html>", content_type="text/html")
        if file_id not in self.shared:
            return web.Response(status=404, text="not found", content_type="text/plain")
        return web.Response(body=self.shared[file_id][1], content_type="text/plain")

    async def respond(self, request: web.Request) -> web.Response:
        """A response_url: what respond() sends from a slash command."""
        self._record("response_url", {"key": request.match_info["key"], **json.loads(await request.text())}, 200)
        return web.Response(text="ok", content_type="text/plain")


    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, then record the app's acknowledgements of what ``push`` sends."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0PDUBOT"}})
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self._record("socket_ack", json.loads(message.data), 200)
        return ws

    def push(self, envelope: dict[str, Any]) -> None:
        """Send an envelope down the open Socket Mode connection, as Slack does for a click."""
        assert self.loop is not None and self.sockets, "no Socket Mode connection"
        asyncio.run_coroutine_threadsafe(self.sockets[-1].send_json(envelope), self.loop).result(5)


async def read_args(request: web.Request) -> dict[str, Any]:
    """Arguments as the Web API takes them: query string, form fields or a JSON body, in that order."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.can_read_body:
        args.update(dict(await request.post()))
    for key in ("blocks", "view", "attachments"):
        if isinstance(args.get(key), str):
            args[key] = json.loads(args[key])
    return args


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    """The fake Web API running on its own loop thread until the block ends."""
    fake = FakeSlack()
    with loop_thread() as loop:
        fake.loop = loop
        runner = web.AppRunner(fake.app(), access_log=None)
        run_on(loop, runner.setup())
        run_on(loop, web.TCPSite(runner, "127.0.0.1", fake.port).start())
        try:
            yield fake
        finally:
            for ws in fake.sockets:
                run_on(loop, ws.close())
            run_on(loop, runner.cleanup())


# What Slack sends to the app: signed HTTP requests.


def signature_headers(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                      retry: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    headers = {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}
    if retry is not None:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    return headers


def forged_headers(body: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(b"not-the-secret", f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


def post(url: str, body: str, headers: dict[str, str], content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={**headers, "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def interaction_body(payload: dict[str, Any]) -> str:
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def user(user_id: str, name: str = "ann") -> dict[str, str]:
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM}


def block_action(action_id: str, value: str, user_id: str, message_ts: str = "1700000001.000100",
                 channel: str = CHANNEL) -> dict[str, Any]:
    return {
        "type": "block_actions", "team": {"id": TEAM, "domain": "opi"}, "user": user(user_id),
        "api_app_id": "A0PDUBOT", "token": "legacy", "trigger_id": f"trigger-{time.monotonic_ns()}",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "pdu-staff"},
        "message": {"type": "message", "ts": message_ts, "text": "card", "bot_id": "BBOT0000"},
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [{"action_id": action_id, "block_id": f"ticket:{value}", "value": value, "type": "button",
                     "action_ts": str(time.time())}],
    }


def view_submission(callback_id: str, values: dict[str, Any], private_metadata: str, user_id: str) -> dict[str, Any]:
    """``values``: block_id -> a string (a text input) or {"selected_option": ...} and the like."""
    state = {block: {"value": (v if isinstance(v, dict) else {"type": "plain_text_input", "value": v})}
             for block, v in values.items()}
    return {
        "type": "view_submission", "team": {"id": TEAM, "domain": "opi"}, "user": user(user_id),
        "api_app_id": "A0PDUBOT", "token": "legacy", "trigger_id": f"trigger-{time.monotonic_ns()}",
        "view": {"id": "V0001", "type": "modal", "callback_id": callback_id, "private_metadata": private_metadata,
                 "state": {"values": state}, "hash": "h1", "team_id": TEAM, "app_id": "A0PDUBOT"},
    }


def message_shortcut(callback_id: str, message: dict[str, Any], user_id: str, channel: str = CHANNEL) -> dict[str, Any]:
    return {
        "type": "message_action", "callback_id": callback_id, "team": {"id": TEAM, "domain": "opi"},
        "user": user(user_id), "channel": {"id": channel, "name": "pdu-staff"}, "message": message,
        "trigger_id": f"trigger-{time.monotonic_ns()}", "response_url": "https://hooks.slack.invalid/a/2",
        "message_ts": message["ts"], "token": "legacy",
    }


def event_body(event: dict[str, Any], event_id: str = "Ev0001") -> str:
    return json.dumps({"token": "legacy", "team_id": TEAM, "api_app_id": "A0PDUBOT", "event": event,
                       "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
                       "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]})


def file_message(files: list[dict[str, Any]], user_id: str, channel: str) -> dict[str, Any]:
    """The message event of files someone shares in a direct message with the bot."""
    return {"type": "message", "subtype": "file_share", "channel": channel, "channel_type": "im", "user": user_id,
            "text": "", "ts": f"{time.time():.6f}", "files": files, "upload": False, "display_as_bot": False}


def command_body(text: str, user_id: str, response_url: str, command: str = "/pdu") -> str:
    return urllib.parse.urlencode({
        "token": "legacy", "team_id": TEAM, "team_domain": "opi", "channel_id": CHANNEL, "channel_name": "pdu-staff",
        "user_id": user_id, "user_name": "ann", "command": command, "text": text, "api_app_id": "A0PDUBOT",
        "response_url": response_url, "trigger_id": f"trigger-{time.monotonic_ns()}",
    })


def block_text(value: Any) -> str:
    """Every text in a Block Kit structure, joined: what a person would read."""
    if isinstance(value, dict):
        parts = [value["text"]] if isinstance(value.get("text"), str) else []
        return "\n".join(parts + [block_text(v) for k, v in value.items() if k != "text" or not isinstance(v, str)])
    if isinstance(value, list):
        return "\n".join(block_text(v) for v in value)
    return ""


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b.get("type") == "actions" for e in b["elements"]]
