"""other: anything that is not one of the known requests, and anything read with too little confidence.

Staff decide what to do with it."""

from __future__ import annotations

from storage.enums import TicketKind
from workflows.kinds.base import Context, Cue, Fields, KindSpec, cue

CUES: tuple[Cue, ...] = (
    cue(r"^\W*(?:thanks?|thank you)\b", 1.5),
    # Thanks for something already done is not a new request, whatever the thread was about.
    cue(r"\bthanks?(?: you)?(?: so much| very much| again)? for (?:fixing|updating|correcting|changing|removing|deleting|"
        r"adding|taking care|making (?:the|that|those) change|the quick|handling|getting)\b", 2.0),
    cue(r"\b(?:everything|it all|all) looks (?:right|good|correct|great)\b|\b(?:it|that) looks (?:right|good|correct|great) now\b"
        r"|\bwe'?re all set\b|\bthat was (?:quick|fast)\b", 1.5),
    # The certificate itself: its design, or a copy for someone who lost theirs.
    cue(r"\b(?:logo|template|branding|design)\b.{0,60}\bcertificates?\b|\bcertificates? (?:template|design|branding|wording)\b", 2.5),
    cue(r"\blost (?:her|his|their|my) certificate\b|\breissue\b", 2.0),
    # How certificates are signed and verified is a question about the process, not a change to an event.
    cue(r"\b(?:digital|electronic|e-)\s*signatures?\b|\bsection iv\b", 2.5),
    cue(r"\bwho (?:signs|has to sign|can sign|should sign)\b|\bhave to be the (?:instructor|presenter) who\b", 1.5),
    # A host asking to be made active again: not a user, not an event.
    cue(r"\breactivat\w*\b.{0,40}\b(?:our|the) (?:host )?account\b|\b(?:our|the) (?:host )?account\b.{0,40}\breactivat", 3.0),
    cue(r"^\W*(?:perfect|great|wonderful|awesome|got it|all set|excellent)[,!. ]+(?:thanks?|thank you)\b|\bthat'?s all we needed\b", 3.0),
    cue(r"\btransition\b(?! updates?)|\btimeline\b|\bnetwork (?:collaborative )?call\b|\bzoom link\b|\bblank certificate\b|\bnewsletter (?:article|submission)\b", 1.0),
    # Educators' own records and renewals belong to Licensure; hosts forward such questions.
    cue(r"\brenew(?:al|ing|s)?\b.{0,60}\blicen[cs]e|\blicensure\b|\bhow many (?:pdus|units)\b|\bclass of licen[cs]e\b", 2.5),
    cue(r"\bwhere (?:is|are) (?:my|her|his|their|the) (?:pdu )?certificates?\b|\bhasn'?t (?:received|gotten|got)\b|\bcan'?t find (?:her|his|my|their|the) certificate", 2.5),
    cue(r"\b(?:demo|pricing|our platform|our product|partnership opportunit|schedule a call)\b", 2.0),
    cue(r"\bbecom(?:e|ing) (?:a |an )?(?:pdu |approved )?(?:host|provider)\b|\bapply to be\b|\bprocess for us\b|\bhost applications?\b|\bapply (?:as|to become) (?:a |an )?(?:host|provider)\b", 3.0),
    cue(r"\bnew system\b|\bswitch ?over\b|\bcarry over\b|\bre-?enter (?:them|everything|our events)\b", 2.0),
    cue(r"\bhow long\b.{0,60}\bkeep\b|\brecords? retention\b|\bsign-in sheets\b", 2.0),
    cue(r"\bnot showing up\b|\b(?:don'?t|doesn'?t|do not|does not|aren'?t|isn'?t|not) show(?:ing)? up\b|\bnever (?:got|received)\b|\bgo to licensure\b", 2.0),
    # How the system works, rather than a change to make: "is there a way to upload events from a spreadsheet?"
    cue(r"\bis there (?:a|any) way to\b|\b(?:bulk|mass) (?:upload|import|entry)\b|\bupload\b.{0,40}\bspreadsheet\b", 2.0),
    cue(r"\bsomething wrong\b|\bon your end\b|\bwhat'?s going on\b|\bany idea why\b", 2.0),
    cue(r"\bcomes? up (?:completely )?blank\b|\bprint(?:s|ing)? (?:out )?blank\b|\bcertificate\b.{0,60}\bblank\b", 2.5),
    cue(r"\b(?:send|give|provide|email) (?:us|me) (?:a |an )?(?:list|report|export|spreadsheet)\b|\bannual report\b|\bno export\b", 2.5),
    cue(r"\bhow many (?:pdus|units|renewal units)\b.{0,30}\bneeds?\b|\b60 (?:pdus|units)\b|\bdepend on the class\b", 2.0),
)


def describe(ctx: Context, fields: Fields) -> str:
    return ""


SPEC = KindSpec(kind=TicketKind.OTHER, cues=CUES, describe=describe)
