"""event_cancel: remove an event that never took place.

An event that took place but issued no certificates is not a cancellation (PDUPS manual); the
certificate_count kind claims those with a stronger cue, so they never reach this module.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.enums import EventStatus, TicketKind
from storage.registry import Event
from workflows.kinds.base import Context, Cue, Fields, KindSpec, Outcome, cue

EVENT_WORDS = r"(?:event|workshop|training|session|class|course|institute|conference|night|day|webinar|thing|it|this|that|one)"
CUES: tuple[Cue, ...] = (
    cue(r"\bcancel(?:l)?(?:ed|ing|ation)?\b", 3.0),
    cue(
        r"\b(?:didn'?t|did not|never|won'?t|will not|wasn'?t|was not|isn'?t|is not|not)\s+"
        r"(?:end up\s+|actually\s+)?(?:happen(?:ing)?|take place|taking place|run|held|get held|be held|going to happen|go forward)\b",
        3.0,
    ),
    cue(r"\bnever (?:held|happened|ran|took place)\b|\bcall(?:ed|ing)? (?:it |this |that |the [\w ]{1,40}?)?off\b|\bsnowed (?:out|in)\b|\bpostponed\b|\bscrapped\b|\bdropped\b|\bfell through\b", 3.0),
    cue(r"\btake\b.{0,60}\boff\b|\b(?:not|won'?t be|will not be) (?:going to )?reschedul\w*|\bnot (?:be )?made up\b", 1.5),
    cue(r"\b(?:delete|remove|pull|drop|take down)\b\s+(?:that|the|this|our)\s+(?:[\w-]+\s+){0,3}(?:event|workshop|training|session|class|course|preview|webinar|day|night)\b|\b(?:event|workshop|training|session|preview)\s+pulled\b|\bpulled\b", 2.5),
    cue(r"\b(?:won'?t|will not|don'?t|do not) have enough (?:\w+ ){0,2}(?:participants|people|registrations|sign-?ups|signed up|enrolled)|\bnot enough (?:participants|registrations|sign-?ups|interest)\b|\bpulled out\b|\bpushed (?:back )?to\b|\bnobody else is\b", 2.0),
    cue(rf"\b(?:remove|delete|take down|take off|drop|pull)\b.{{0,50}}\b{EVENT_WORDS}\b", 1.5),
    cue(r"\boff (?:the|our) (?:calendar|list|schedule|events)\b|\bfrom (?:pdups|rups|the calendar|our events|our list)\b", 1.5),
    cue(r"\bremove\b.{0,40}\bfrom\b.{0,30}\bevents\b|\bnot doing (?:it|this|that|them)\b|\b(?:won'?t be|will not be|aren'?t|are not|not) (?:running|offering|holding|doing) (?:it|this|that|the|our)\b", 2.5),
    cue(r"\b(?:no one|nobody) (?:attended|signed up|registered|came)\b|\blow (?:enrollment|registration)\b|\bonly had \d+ sign", 1.5),
)


def missing(ctx: Context, fields: Fields) -> list[str]:
    return ([] if ctx.host else ["host"]) + ([] if ctx.event else ["event"])


def describe(ctx: Context, fields: Fields) -> str:
    what = f"{ctx.event.title} ({ctx.event.start_date:%b %-d, %Y})" if ctx.event else "an event"
    return f"{what} was cancelled and should be removed from PDUPS."


def apply(session: Session, ticket: object, actor: str) -> Outcome:
    event = session.get(Event, ticket.event_id)  # type: ignore[attr-defined]
    before = {"status": event.status.value}
    event.status = EventStatus.CANCELLED
    summary = f"Removed the cancelled event {event.title} ({event.event_id})."
    return Outcome("event", event.event_id, "cancel", before, {"status": event.status.value}, summary)


SPEC = KindSpec(
    kind=TicketKind.EVENT_CANCEL,
    cues=CUES,
    missing=missing,
    describe=describe,
    about_event=True,
    apply=apply,
    next_step="OPI Professional Learning staff will remove the event and email you when it is done.",
)
