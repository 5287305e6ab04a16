"""other: anything that is not one of the known requests, and anything read with too little confidence.

Staff decide what to do with it."""

from __future__ import annotations

from storage.enums import TicketKind
from workflows.kinds.base import Context, Cue, Fields, KindSpec, cue

CUES: tuple[Cue, ...] = (
    cue(r"^\W*(?:thanks?|thank you)\b", 1.5),
    cue(r"\btransition\b|\btimeline\b|\bnetwork (?:collaborative )?call\b|\bzoom link\b|\bblank certificate\b|\bnewsletter (?:article|submission)\b", 1.0),
)


def describe(ctx: Context, fields: Fields) -> str:
    return ""


SPEC = KindSpec(kind=TicketKind.OTHER, cues=CUES, describe=describe)
