"""PLP Insider editions staff write in Slack: the draft and its checks, and a Markdown file or message sent to the bot."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = (".md", ".markdown")
FILE_LIMIT = 200 * 1024  # an edition is a few pages; anything bigger is not one
SUBJECT_LIMIT = 250
KEY_LIMIT = 100  # the mailings.key column
KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # it names the PDF, so no spaces or slashes
HEADER = re.compile(r"(key|subject)\s*:\s*(.*?)\s*", re.IGNORECASE)
SLACK_FILES = ("https", "files.slack.com")  # where url_private points
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=30)
FILE_HELP = ('Name the file after the edition (2026-12.md) or start it with a "Key: 2026-12" line, and start '
             'it with "# Subject" or a "Subject: ..." line.')
MESSAGE_HELP = ('To send me a PLP Insider edition, start the message with a "Key: 2026-12" line, then "# Subject" '
                '(or a "Subject: ..." line), then the edition in Markdown; or send me a .md file.')
SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")  # <https://...|label>, <mailto:...>, <@U123>, <#C123|name>
SLACK_BULLET = re.compile(r"^(\s*)[\u2022\u25e6\u25aa] ", re.MULTILINE)  # how Slack writes a list it formatted


@dataclass(frozen=True)
class Draft:
    """An edition as staff wrote it, before ``workflows.newsletter.prepare_edition`` renders it."""

    key: str
    subject: str
    markdown: str


def draft_problems(draft: Draft) -> dict[str, str]:
    """What is wrong with ``draft`` on its face, by the modal block it concerns ("key", "subject", "markdown")."""
    problems: dict[str, str] = {}
    if not draft.key:
        problems["key"] = "The edition needs a key, for example 2026-12."
    elif not KEY_PATTERN.fullmatch(draft.key) or len(draft.key) > KEY_LIMIT:
        problems["key"] = (f"\u201c{draft.key[:40]}\u201d is not an edition key: use letters, digits and dashes, "
                           "for example 2026-12.")
    if not draft.subject.strip():
        problems["subject"] = "The edition needs a subject."
    elif len(draft.subject) > SUBJECT_LIMIT or "\n" in draft.subject:
        problems["subject"] = f"The subject must be one line of at most {SUBJECT_LIMIT} characters."
    if not draft.markdown.strip():
        problems["markdown"] = "The edition has no text."
    return problems


def is_markdown(file: dict[str, Any]) -> bool:
    return str(file.get("name") or "").lower().endswith(MARKDOWN_SUFFIXES)


def read_markdown_file(filename: str, text: str) -> Draft:
    """The edition in a Markdown file: "Key:" and "Subject:" lines at the top, else the file name and a "# Subject".

    The subject's line is left out of the body: the email and the PDF print the subject as the heading.
    """
    lines = text.lstrip("\ufeff").splitlines()
    fields: dict[str, str] = {}
    while lines and (not lines[0].strip() or HEADER.fullmatch(lines[0])):
        header = HEADER.fullmatch(lines.pop(0))
        if header is not None:
            fields[header[1].lower()] = header[2]
    subject = fields.get("subject", "")
    if not subject and lines and lines[0].startswith("# "):
        subject = lines.pop(0)[2:].strip().rstrip("#").strip()  # an ATX heading may close with #s
    key = fields.get("key") or PurePosixPath(filename).stem
    return Draft(key, subject, "\n".join(lines).strip())


def read_message(text: str) -> Draft | None:
    """The edition in a direct message to the bot, or None when the message does not look like one.

    A message is an edition when its first line that is not blank is a top-level Markdown heading
    ("# Subject") or a "Key:" or "Subject:" line. It is read as a Markdown file is, except that there is
    no file name to take the key from, so the key must be on a "Key:" line.
    """
    markdown = slack_to_markdown(text)
    first = next((line for line in markdown.lstrip("\ufeff").splitlines() if line.strip()), "")
    if not (first.startswith("# ") or HEADER.fullmatch(first)):
        return None
    return read_markdown_file("", markdown)


def slack_to_markdown(text: str) -> str:
    """A message's text as its author typed it: Slack's links, lists and escapes turned back into Markdown.

    Slack sends "&", "<" and ">" escaped, wraps every link it recognises in angle brackets (with its
    label after a "|"), and writes the items of a list it formatted with a bullet (its "Formatting text"
    guide).
    """
    text = SLACK_LINK.sub(_markdown_link, text)
    text = SLACK_BULLET.sub(r"\1- ", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _markdown_link(match: re.Match[str]) -> str:
    target, label = match[1], match[2]
    if target[:1] in "@#":
        return target[0] + (label or target[1:])  # a mention of a person or channel reads as its name
    if label is None or label in (target, target.removeprefix("mailto:")):
        return f"<{label or target}>"  # a bare URL or address: Markdown's own autolink
    return f"[{label}]({target})"


class FileProblem(Exception):
    """A shared file the bot cannot take as an edition; the message is for the person who shared it."""


async def file_info(client: AsyncWebClient, file_id: str) -> dict[str, Any]:
    """The file's details from files.info (a file in a message event may carry only its ID)."""
    try:
        response = await client.files_info(file=file_id)
    except SlackApiError as exc:
        logger.warning("files.info for %s failed: %s", file_id, exc.response.get("error"))
        raise FileProblem(f"Slack would not show me the file ({exc.response.get('error')}).") from exc
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        logger.warning("files.info for %s: Slack unreachable (%s)", file_id, type(exc).__name__)
        raise FileProblem("I could not reach Slack to read the file; please send it again.") from exc
    return dict(response.get("file") or {})


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def is_slack_file_url(url: str, api_url: str) -> bool:
    """Only Slack's file host, or the host of SLACK_API_URL when it points elsewhere (tests), gets the token."""
    return bool(urlsplit(url).netloc) and origin(url) in (SLACK_FILES, origin(api_url))


async def fetch_draft(client: AsyncWebClient, file: dict[str, Any]) -> Draft:
    """The edition in a Markdown file shared with the bot (``file`` as files.info gives it)."""
    if int(file.get("size") or 0) > FILE_LIMIT:
        raise FileProblem(too_large(FILE_LIMIT))
    text = decode(await download(client, file))
    return read_markdown_file(str(file.get("name") or ""), text)


async def download(client: AsyncWebClient, file: dict[str, Any], limit: int = FILE_LIMIT) -> bytes:
    """The bytes of a shared file, fetched from its url_private with the bot token, refused past ``limit``."""
    url = str(file.get("url_private_download") or file.get("url_private") or "")
    if not is_slack_file_url(url, client.base_url):
        logger.warning("refused to download %r: not a Slack file URL", url[:200])
        raise FileProblem("The file is not stored in Slack, so I cannot read it.")
    try:
        # aiohttp drops the Authorization header if a redirect leaves the origin.
        async with (aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as http,
                    http.get(url, headers={"Authorization": f"Bearer {client.token}"}) as response):
            return await read_body(response, limit)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        logger.warning("downloading file %s failed: %s", file.get("id"), type(exc).__name__)
        raise FileProblem("I could not download the file from Slack; please send it again.") from exc


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.status != 200 or response.content_type == "text/html":
        # Without the files:read scope Slack answers with its sign-in page instead of the file.
        logger.warning("Slack gave HTTP %s %s for a file, not the file", response.status, response.content_type)
        raise FileProblem("Slack did not give me the file; the app may need the files:read scope.")
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise FileProblem(too_large(limit))
    return bytes(data)


def too_large(limit: int) -> str:
    return f"The file is larger than {limit // 1024} KB, so it is not an edition I can take."


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem("The file is not UTF-8 text; save it as UTF-8 and send it again.") from exc
