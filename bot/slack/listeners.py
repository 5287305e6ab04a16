"""The Slack listeners: card buttons, modals, the reply shortcut, thread messages, App Home, ``/pdu``,
and PLP Insider editions sent to the bot in a direct message, as a Markdown file or as the message itself.

Each listener acknowledges first (Slack waits 3 seconds at most), checks that the person is staff,
and then calls a plain function of ``bot.slack.desk`` in a thread, where the database work happens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import cards, editions, modals
from bot.slack import desk as actions
from bot.slack.command import answer
from bot.slack.desk import Desk, Result
from bot.slack.home import home_view, staff_only_view
from bot.slack.modals import Origin
from bot.slack.text import escape
from storage.base import utcnow
from workflows.calendar import is_business_day
from workflows.newsletter import APPROVE_ACTION as EDITION_APPROVE

logger = logging.getLogger(__name__)

REPLY_SHORTCUT = "ticket_reply_shortcut"
COMMAND = "/pdu"
REFUSAL = "Only OPI Professional Learning staff can act on tickets. Nothing was changed."
NOT_A_TICKET = "This message is not in a ticket's thread."
DM_REFUSAL = ("Thank you for the file. Only OPI Professional Learning staff can send me PLP Insider editions, "
              "so I have not read it.")
MESSAGE_REFUSAL = ("Thank you for your message. I only take PLP Insider editions from OPI Professional Learning "
                   "staff, so nothing was done with it. To reach the PDU team, email {mailbox}.")
NEWSLETTER = "newsletter"
EDITION_SEND_HOUR = 9


def channel_of(body: dict[str, Any], desk: Desk) -> str:
    return str((body.get("channel") or {}).get("id") or desk.channel)


async def staff_actor(desk: Desk, client: AsyncWebClient, body: dict[str, Any], channel: str) -> str | None:
    """The audit name of the person acting, or None after telling a non-staff person they cannot."""
    user = body.get("user") or {}
    user_id = str(user.get("id") or "")
    if not user_id or not await desk.staff.allows(user_id):
        logger.info("refused a Slack action from %s: not in SLACK_STAFF", user_id or "an unknown user")
        if user_id:
            await client.chat_postEphemeral(channel=channel, user=user_id, text=REFUSAL)
        return None
    return await desk.names.actor(user_id, str(user.get("name") or user.get("username") or ""))


async def tell(desk: Desk, client: AsyncWebClient, channel: str, user_id: str, result: Result) -> None:
    """Wake delivery after a change (the card updates at once), and say privately what happened."""
    if result.changed:
        desk.on_change()
    if result.message:
        await client.chat_postEphemeral(channel=channel, user=user_id, text=escape(result.message))


def is_thread_talk(event: dict[str, Any], channel: str) -> bool:
    """A person's own new message in a thread of the staff channel; not edits, joins, files or bots."""
    in_a_thread = bool(event.get("thread_ts")) and event.get("thread_ts") != event.get("ts")
    return (event.get("channel") == channel and in_a_thread and not event.get("subtype")
            and not event.get("bot_id") and bool(event.get("user")))


def is_file_for_the_bot(event: dict[str, Any]) -> bool:
    """A person's files in a direct message to the bot (subtype file_share, or files on the message)."""
    has_files = event.get("subtype") == "file_share" or bool(event.get("files"))
    return (event.get("channel_type") == "im" and has_files and not event.get("bot_id")
            and bool(event.get("user")) and bool(event.get("channel")))


def is_message_for_the_bot(event: dict[str, Any]) -> bool:
    """A person's own new text message in a direct message to the bot; not edits, files or bots."""
    return (event.get("channel_type") == "im" and not event.get("subtype") and not event.get("bot_id")
            and bool(event.get("user")) and bool(event.get("channel")) and bool(event.get("text")))


def next_business_morning(now: dt.datetime, desk: Desk) -> dt.datetime:
    day = now.astimezone(desk.tz).date() + dt.timedelta(days=1)
    while not is_business_day(day):
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(EDITION_SEND_HOUR), desk.tz)


def register(app: AsyncApp, desk: Desk) -> None:
    """Attach every listener of the staff app to ``app``."""
    register_buttons(app, desk)
    register_modals(app, desk)
    register_events(app, desk)
    register_command(app, desk)


def register_buttons(app: AsyncApp, desk: Desk) -> None:
    def decision(run: Any) -> Any:
        """A button that decides at once: Approve, Assign to me, Undo."""
        async def listener(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            channel = channel_of(body, desk)
            actor = await staff_actor(desk, client, body, channel)
            if actor is None:
                return
            result = await asyncio.to_thread(run, desk, int(action["value"]), actor)
            await tell(desk, client, channel, body["user"]["id"], result)
        return listener

    def opens(build: Any) -> Any:
        """A button that asks for words first: Reject, Ask host, Reply to host."""
        async def listener(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            channel = channel_of(body, desk)
            if await staff_actor(desk, client, body, channel) is None:
                return
            origin = Origin(int(action["value"]), channel)
            await client.views_open(trigger_id=body["trigger_id"], view=build(origin))
        return listener

    async def edit_approve(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        channel = channel_of(body, desk)
        if await staff_actor(desk, client, body, channel) is None:
            return
        ticket = await asyncio.to_thread(actions.editable, desk.sessions, int(action["value"]))
        if ticket is None:
            missing = Result(False, f"There is no ticket PDU-{action['value']}.")
            await tell(desk, client, channel, body["user"]["id"], missing)
            return
        view = modals.edit_approve(ticket, Origin(ticket.number, channel))
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def reply_shortcut(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        channel = channel_of(body, desk)
        if await staff_actor(desk, client, body, channel) is None:
            return
        message = body.get("message") or {}
        thread_ts = str(message.get("thread_ts") or message.get("ts") or "")
        number = await asyncio.to_thread(actions.ticket_in_thread, desk.sessions, thread_ts)
        if number is None:
            await tell(desk, client, channel, body["user"]["id"], Result(False, NOT_A_TICKET))
            return
        await client.views_open(trigger_id=body["trigger_id"], view=modals.reply(Origin(number, channel, thread_ts)))

    async def edition_approve(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        channel = channel_of(body, desk)
        if await staff_actor(desk, client, body, channel) is None:
            return
        view = modals.schedule_edition(str(action["value"]), channel, next_business_morning(utcnow(), desk))
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    app.action(cards.APPROVE)(decision(actions.approve))
    app.action(cards.ASSIGN)(decision(actions.assign))
    app.action(cards.UNDO)(decision(actions.undo))
    app.action(cards.REJECT)(opens(modals.reject))
    app.action(cards.ASK_HOST)(opens(modals.ask_host))
    app.action(cards.REPLY)(opens(modals.reply))
    app.action(cards.EDIT_APPROVE)(edit_approve)
    app.shortcut(REPLY_SHORTCUT)(reply_shortcut)
    app.action(EDITION_APPROVE)(edition_approve)


def register_modals(app: AsyncApp, desk: Desk) -> None:
    def submitted(block_id: str, run: Any) -> Any:
        """A modal whose one text box goes to the host: the rejection reason, the question, the reply."""
        async def listener(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            origin = Origin.load(view.get("private_metadata", ""))
            channel = origin.channel or desk.channel
            actor = await staff_actor(desk, client, body, channel)
            if actor is None:
                return
            result = await asyncio.to_thread(run, desk, origin.number, actor, modals.value(view, block_id))
            await tell(desk, client, channel, body["user"]["id"], result)
        return listener

    async def edit_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        edits, errors = modals.read_edits(view)
        if errors:
            await ack(response_action="errors", errors=errors)  # the modal stays open beside the mistake
            return
        await ack()
        origin = Origin.load(view.get("private_metadata", ""))
        channel = origin.channel or desk.channel
        actor = await staff_actor(desk, client, body, channel)
        if actor is None:
            return
        result = await asyncio.to_thread(actions.approve, desk, origin.number, actor, edits)
        await tell(desk, client, channel, body["user"]["id"], result)

    async def edition_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        metadata = json.loads(view.get("private_metadata") or "{}")
        channel = str(metadata.get("channel") or desk.channel)
        actor = await staff_actor(desk, client, body, channel)
        if actor is None:
            return
        send_at = dt.datetime.fromtimestamp(int(modals.value(view, "send_at")), dt.timezone.utc)
        result = await asyncio.to_thread(actions.schedule_edition, desk, str(metadata["edition"]), actor, send_at)
        await tell(desk, client, channel, body["user"]["id"], result)

    async def newsletter_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any],
                                   client: AsyncWebClient) -> None:
        draft = modals.read_edition(view)
        errors = await asyncio.to_thread(actions.edition_problems, desk.sessions, draft)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        # Only the quick checks go before the answer Slack waits 3 seconds for; rendering the edition comes after.
        await ack()
        actor = await staff_actor(desk, client, body, desk.channel)
        if actor is None:
            return
        result = await asyncio.to_thread(actions.prepare_newsletter, desk, draft, actor)
        await tell(desk, client, desk.channel, body["user"]["id"], result)

    app.view(modals.REJECT)(submitted("reason", actions.reject))
    app.view(modals.ASK_HOST)(submitted("question", actions.ask_host))
    app.view(modals.REPLY)(submitted("text", actions.reply_to_host))
    app.view(modals.EDIT_APPROVE)(edit_submitted)
    app.view(modals.SCHEDULE_EDITION)(edition_submitted)
    app.view(modals.NEW_EDITION)(newsletter_submitted)


def register_events(app: AsyncApp, desk: Desk) -> None:
    async def thread_message(ack: Any, event: dict[str, Any]) -> None:
        await ack()
        if not is_thread_talk(event, desk.channel):
            return
        actor = await desk.names.actor(str(event["user"]))
        # The message's channel and ts identify it, so a redelivered event (X-Slack-Retry-Num) is kept once.
        ref = f"{event['channel']}:{event['ts']}"
        text = str(event.get("text") or "")
        await asyncio.to_thread(actions.keep_note, desk, str(event["thread_ts"]), actor, text, ref)

    async def home_opened(ack: Any, event: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        if event.get("tab", "home") != "home":
            return
        user_id = str(event["user"])
        if await desk.staff.allows(user_id):
            view = await asyncio.to_thread(render_home, desk, user_id)
        else:
            view = staff_only_view()
        await client.views_publish(user_id=user_id, view=view)

    async def file_for_the_bot(ack: Any, event: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id, channel = str(event["user"]), str(event["channel"])
        if not await desk.staff.allows(user_id):
            logger.info("refused a file sent to the bot by %s: not in SLACK_STAFF", user_id)
            await client.chat_postMessage(channel=channel, text=DM_REFUSAL)
            return
        actor = await desk.names.actor(user_id)
        for file in event.get("files") or []:
            reply = await prepare_from_file(desk, client, file, actor)
            await client.chat_postMessage(channel=channel, text=escape(reply))

    async def message_for_the_bot(ack: Any, event: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id, channel = str(event["user"]), str(event["channel"])
        if not await desk.staff.allows(user_id):
            logger.info("refused a message sent to the bot by %s: not in SLACK_STAFF", user_id)
            await client.chat_postMessage(channel=channel, text=MESSAGE_REFUSAL.format(mailbox=desk.policy.address))
            return
        draft = editions.read_message(str(event["text"]))
        if draft is None:
            await client.chat_postMessage(channel=channel, text=editions.MESSAGE_HELP)
            return
        actor = await desk.names.actor(user_id)
        reply = await prepare_draft(desk, draft, actor, "your message", editions.MESSAGE_HELP)
        await client.chat_postMessage(channel=channel, text=escape(reply))

    async def is_file_event(event: dict[str, Any]) -> bool:
        return is_file_for_the_bot(event)

    async def is_message_event(event: dict[str, Any]) -> bool:
        return is_message_for_the_bot(event)

    # Registered first: Bolt runs only the first listener that matches a message.
    app.event("message", matchers=[is_file_event])(file_for_the_bot)
    app.event("message", matchers=[is_message_event])(message_for_the_bot)
    app.event("message")(thread_message)
    app.event("app_home_opened")(home_opened)


async def prepare_from_file(desk: Desk, client: AsyncWebClient, file: dict[str, Any], actor: str) -> str:
    """Prepare the edition in a Markdown file sent to the bot; what to answer the person who sent it."""
    name = str(file.get("name") or file.get("id") or "the file")
    try:
        info = await editions.file_info(client, str(file.get("id") or ""))
        name = str(info.get("name") or name)
        if not editions.is_markdown(info):
            return f"{name} is not a Markdown file. Send a PLP Insider edition as a .md or .markdown file."
        draft = await editions.fetch_draft(client, info)
    except editions.FileProblem as exc:
        return f"I could not take {name}: {exc}"
    return await prepare_draft(desk, draft, actor, name, editions.FILE_HELP)


async def prepare_draft(desk: Desk, draft: editions.Draft, actor: str, source: str, help_text: str) -> str:
    """Prepare the edition staff sent the bot (``source`` names it in the answer); what to answer them."""
    problems = editions.draft_problems(draft)
    if problems:
        return f"I could not prepare an edition from {source}: {' '.join(problems.values())} {help_text}"
    result = await asyncio.to_thread(actions.prepare_newsletter, desk, draft, actor)
    if result.changed:
        desk.on_change()
    return result.message


def render_home(desk: Desk, user_id: str) -> dict[str, Any]:
    with desk.sessions() as session:
        return home_view(session, user_id, utcnow(), desk.tz)


def register_command(app: AsyncApp, desk: Desk) -> None:
    async def pdu(ack: Any, command: dict[str, Any], respond: Any, client: AsyncWebClient) -> None:
        await ack()
        if not await desk.staff.allows(str(command.get("user_id") or "")):
            await respond(text=REFUSAL, response_type="ephemeral")
            return
        words = str(command.get("text") or "").split()
        if words and words[0].lower() == NEWSLETTER:
            key = words[1] if len(words) > 1 else ""
            await client.views_open(trigger_id=command["trigger_id"], view=modals.new_edition(key))
            return
        reply = await asyncio.to_thread(render_answer, desk, str(command.get("text") or ""))
        await respond(response_type="ephemeral", **reply)

    app.command(COMMAND)(pdu)


def render_answer(desk: Desk, text: str) -> dict[str, Any]:
    with desk.sessions() as session:
        return answer(session, text, utcnow(), desk.tz)
