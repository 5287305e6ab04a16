"""The modals staff fill in: edit & approve, reject, ask the host, reply to the host, write and schedule an edition."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from bot.slack.desk import Editable
from bot.slack.editions import KEY_LIMIT, SUBJECT_LIMIT, Draft
from storage.enums import TicketKind

EDIT_APPROVE = "ticket_edit_modal"
REJECT = "ticket_reject_modal"
ASK_HOST = "ticket_ask_modal"
REPLY = "ticket_reply_modal"
SCHEDULE_EDITION = "edition_schedule_modal"
NEW_EDITION = "edition_write_modal"

# Kinds a person can ask for; the others (auto-replies, bounces, unreadable mail) are never approved.
NOT_REQUESTS = (TicketKind.AUTO_REPLY, TicketKind.BOUNCE, TicketKind.UNREADABLE)
REQUEST_KINDS = tuple(k for k in TicketKind if k not in NOT_REQUESTS)
INPUT_LIMIT = 3000  # Slack's most for a plain-text input


@dataclass(frozen=True)
class Origin:
    """Where a modal was opened from, carried in its private_metadata: the ticket, and where to answer."""

    number: int
    channel: str = ""
    thread_ts: str = ""

    def dump(self) -> str:
        return json.dumps({"number": self.number, "channel": self.channel, "thread_ts": self.thread_ts})

    @classmethod
    def load(cls, text: str) -> Origin:
        data = json.loads(text or "{}")
        return cls(int(data["number"]), str(data.get("channel") or ""), str(data.get("thread_ts") or ""))


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def modal(callback_id: str, title: str, submit: str, blocks: list[dict[str, Any]], metadata: str) -> dict[str, Any]:
    return {"type": "modal", "callback_id": callback_id, "title": plain(title[:24]), "submit": plain(submit),
            "close": plain("Cancel"), "private_metadata": metadata, "blocks": blocks}


def text_input(block_id: str, label: str, initial: str = "", multiline: bool = False, optional: bool = False,
               hint: str = "", limit: int = INPUT_LIMIT) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline,
                               "max_length": limit}
    if initial:
        element["initial_value"] = initial[:limit]
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": plain(label), "element": element,
                             "optional": optional}
    if hint:
        block["hint"] = plain(hint)
    return block


def edit_approve(ticket: Editable, origin: Origin) -> dict[str, Any]:
    """The parsed reading, prefilled, for staff to correct before approving."""
    options = [{"text": plain(k.value.replace("_", " ")), "value": k.value} for k in REQUEST_KINDS]
    kind = {"type": "input", "block_id": "kind", "label": plain("Kind"), "element": {
        "type": "static_select", "action_id": "value", "options": options,
        "initial_option": next(o for o in options if o["value"] == ticket.kind.value) if ticket.kind in REQUEST_KINDS
        else options[-1]}}
    blocks = [
        kind,
        text_input("host_id", "Host ID", ticket.host_id, optional=True),
        text_input("event_id", "Event ID", ticket.event_id, optional=True),
        text_input("fields", "Fields (JSON)", json.dumps(ticket.fields, indent=2, default=str, ensure_ascii=False),
                   multiline=True, hint='For example {"changes": {"hours": 4.5}} or {"count": 23}.'),
    ]
    return modal(EDIT_APPROVE, f"Edit & approve PDU-{ticket.number}", "Approve", blocks, origin.dump())


def reject(origin: Origin) -> dict[str, Any]:
    blocks = [text_input("reason", "Why? (emailed to the host)", multiline=True)]
    return modal(REJECT, f"Reject PDU-{origin.number}", "Reject", blocks, origin.dump())


def ask_host(origin: Origin) -> dict[str, Any]:
    blocks = [text_input("question", "Your question (emailed to the host)", multiline=True)]
    return modal(ASK_HOST, f"Ask host, PDU-{origin.number}", "Send", blocks, origin.dump())


def reply(origin: Origin) -> dict[str, Any]:
    blocks = [text_input("text", "Your reply (emailed to the host)", multiline=True)]
    return modal(REPLY, f"Reply, PDU-{origin.number}", "Send", blocks, origin.dump())


def schedule_edition(edition_key: str, channel: str, initial: dt.datetime) -> dict[str, Any]:
    blocks = [{"type": "input", "block_id": "send_at", "label": plain("Send at"), "element": {
        "type": "datetimepicker", "action_id": "value", "initial_date_time": int(initial.timestamp())}}]
    metadata = json.dumps({"edition": edition_key, "channel": channel})
    return modal(SCHEDULE_EDITION, "Schedule the edition", "Approve", blocks, metadata)


def new_edition(key: str = "") -> dict[str, Any]:
    """A PLP Insider edition written in Slack; submitting it prepares the edition and posts its preview."""
    blocks = [
        text_input("key", "Edition key", key, limit=KEY_LIMIT,
                   hint="For example 2026-12. Using a key again replaces that edition until it is approved."),
        text_input("subject", "Subject", limit=SUBJECT_LIMIT),
        text_input("markdown", "The edition, in Markdown", multiline=True,
                   hint=f"Slack takes at most {INPUT_LIMIT:,} characters here. For a longer edition, send the .md "
                        "file to the bot in a direct message."),
    ]
    return modal(NEW_EDITION, "New PLP Insider edition", "Prepare", blocks, "")


def read_edition(view: dict[str, Any]) -> Draft:
    return Draft(value(view, "key"), value(view, "subject"), value(view, "markdown"))


def value(view: dict[str, Any], block_id: str) -> str:
    """A submitted plain-text or select value, "" when left empty."""
    state = view["state"]["values"].get(block_id, {}).get("value", {})
    if state.get("selected_option"):
        return str(state["selected_option"]["value"])
    if state.get("selected_date_time") is not None:
        return str(state["selected_date_time"])
    return (state.get("value") or "").strip()


def read_edits(view: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The corrected reading for ``decisions.approve(edits=...)``, or the errors to show beside the inputs."""
    try:
        fields = json.loads(value(view, "fields") or "{}")
    except json.JSONDecodeError as exc:
        return None, {"fields": f"This is not valid JSON: {exc.msg} (line {exc.lineno})."}
    if not isinstance(fields, dict):
        return None, {"fields": "The fields must be a JSON object, in { }."}
    edits: dict[str, Any] = {"fields": fields, "host_id": value(view, "host_id") or None,
                             "event_id": value(view, "event_id") or None}
    kind = value(view, "kind")
    if kind:
        edits["kind"] = kind
    return edits, {}
