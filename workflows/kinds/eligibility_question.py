"""eligibility_question: "does this activity qualify for PDUs?". Staff judge it against ARM 10.55.714;
the ticket carries hints from OPI's lists, and the service never answers by itself."""

from __future__ import annotations

from storage.enums import TicketKind
from workflows.kinds.base import Context, Cue, Fields, KindSpec, cue

# "Does it count?" asks whether something qualifies; "which event do we count them under?" is counting people.
NOT_COUNTING_PEOPLE = r"(?!\s+(?:them|it|those|these|him|her|us|people|participants|teachers|attendees|educators)\b)"
UNITS = r"(?:pdus?|professional development units?|opi (?:pdu )?certificates?|certificates?|credit|renewal units?|units)"
CUES: tuple[Cue, ...] = (
    cue(r"\bqualif(?:y|ies|ied|ying)\b|\beligib(?:le|ility)\b|(?<!certificate )(?<!certificates )\bcount (?:for|toward|towards|as)\b|\bmeets? (?:the )?(?:requirements|standards|criteria)\b", 2.5),
    cue(rf"\b(?:can|could|may|would|are|is)\s+(?:we|i|they|it|this|that|those|these|our \w+)\b.{{0,60}}\b(?:issue|give|offer|award|get|earn|receive|be (?:eligible|approved|allowed|offered|issued|awarded|accepted))\b.{{0,60}}\b{UNITS}", 3.0),
    cue(r"\barm 10\.5[57]|\ballowed\b|\bappropriate\b|\bguidance\b|\bacceptable\b", 1.5),
    cue(rf"\bdoes (?:a|an|this|that|it|our|the)\b.{{0,40}}\bcount\b{NOT_COUNTING_PEOPLE}|\b(?:pdus?|units|credit) for (?:this|that|it|those|them|these)\b", 3.0),
    cue(r"\b(?:issue|give|offer|award)\w* (?:opi )?(?:pdu )?(?:certificates?|pdus?) for (?:this|that|it|those|them|these)\b", 3.0),
    cue(r"\?", 0.5),
    cue(rf"\b(?:can|could|would|does|do|will)\b[^?.]{{0,60}}\bcount\b{NOT_COUNTING_PEOPLE}[^?]{{0,80}}\?", 2.5),
    cue(r"\b(?:could|can|may|would|should|do)\s+(?:we|i|they|our|these|those|it|this|that)\b[^?]{0,120}\b(?:pdus?|pdu events?|renewal units|professional development units|units)\b[^?]{0,60}\?", 3.0),
    # "teachers can count the time they spend in conferences toward their renewal units"
    cue(r"\bcount\b.{0,60}\btowards?\b.{0,30}\b(?:renewal|pdus?|units|licen[cs]e|recertification)", 2.5),
    # "I know some trainings don't count", "Mandatory reporter training for PDUs?"
    cue(r"\b(?:don'?t|doesn'?t|do not|does not|won'?t|wouldn'?t|might not|may not)\s+(?:\w+\s+)?(?:count|qualify)\b", 1.5),
    cue(r"\bfor (?:pdus?|pdu credit|renewal units?|professional development units?)\s*\?", 2.0),
    # "I'm not asking whether it qualifies, just how to enter it": the question is about something else.
    cue(r"\bnot (?:asking|wondering|questioning)\s+(?:whether|if|about)\b.{0,40}\b(?:qualif|eligib|count)", -3.0),
    cue(r"\bplcs?\b|\bbook (?:study|club)\b|\bcpr\b|\bfirst aid\b|\bstaff meetings?\b|\bmentor\w*\b|\bmandatory report|\bblood[- ]?borne\b|\bgrading\b|\bconferences? (?:time|day)\b", 0.75),
)


def describe(ctx: Context, fields: Fields) -> str:
    return "a question about whether an activity qualifies for PDUs."


SPEC = KindSpec(
    kind=TicketKind.ELIGIBILITY_QUESTION,
    cues=CUES,
    describe=describe,
    next_step="OPI Professional Learning staff will review the activity against the state rule (ARM 10.55.714) and reply to you.",
)
