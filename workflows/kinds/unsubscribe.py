"""unsubscribe: leave the mailing list. Leaving is immediate for the sender's own address."""

from __future__ import annotations

from storage.enums import TicketKind
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, cue
from workflows.kinds.subscribe import LISTS, read_person

CUES: tuple[Cue, ...] = (
    cue(r"\bunsubscrib\w*\b|\bopt(?:ed)? out\b", 4.0),
    cue(r"\b(?:remove me|take me off|stop sending|no longer (?:want|need|wish) to (?:receive|get)|don'?t (?:want|need) (?:these|them|to receive))\b", 3.0),
    cue(rf"\b(?:remov(?:e|ed|ing)|tak(?:e|en|ing)|drop(?:ped)?|delet(?:e|ed))\b.{{0,80}}\b(?:from|off)\b.{{0,40}}\b{LISTS}\b", 3.0),
    cue(r"\b(?:remove|take|drop|delete) (?:me|my (?:name|e-?mail|address))\b.{0,40}\b(?:from|off)\b.{0,20}\blist\b", 3.0),
    cue(r"\btoo many e-?mails\b", 1.0),
    cue(r"\bkeep (?:getting|receiving) (?:your|these|the) (?:e-?mails|messages|newsletters?)\b|\bplease stop\b|\bhow i got on (?:this|your) list\b", 3.0),
)


def extract(ctx: Context) -> Fields:
    return {"person": read_person(ctx)}


def describe(ctx: Context, fields: Fields) -> str:
    email = (fields.get("person") or {}).get("email")
    return f"a request to remove {email} from the mailing list."


SPEC = KindSpec(
    kind=TicketKind.UNSUBSCRIBE,
    cues=CUES,
    extract=extract,
    describe=describe,
    approval=Approval.NONE,
    next_step="The address is off the mailing list now. You will get no more list emails.",
)
