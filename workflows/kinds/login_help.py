"""login_help: Secure Portal password resets and forgotten usernames, answered at once with the steps.

The OPI\\ domain prefix is used only when resetting; afterwards the host signs in with the plain
username, usually first initial + last name (PDUPS manual). The ticket stays closed unless the host
writes again, which brings it to staff.
"""

from __future__ import annotations

from storage.enums import TicketKind
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, cue

CUES: tuple[Cue, ...] = (
    cue(r"\bpass ?words?\b|\bpw\b", 2.0),
    # "thanks for the help with the password, I'm in now": solved already.
    cue(r"\b(?:i'?m|i am|we'?re) (?:in|logged in|back in|able to log in) now\b|\bhelp with (?:the|my) password\b", -2.0),
    cue(r"\bsign(?:ed)? into\b|\b(?:tile|app|application|link|icon) (?:is |was )?(?:gone|missing)\b|\bmissing from (?:my |the )?(?:secure )?portal\b", 2.5),
    cue(r"\blog ?(?:in|on)\b(?![- ]sheets?)|\bsign(?:ing)? in\b(?![- ]sheets?)|\blocked out\b|\bcan'?t (?:get|log|sign) (?:in|on)\b|\bunable to (?:log|sign|access)\b|\bget into (?:the )?(?:portal|pdups|rups|system)", 2.0),
    cue(r"\bsecure portal\b|\bverification code\b|\breset\b|\bexpired\b|\bforgot\w*\b|\bremember my\b|\bdomain\b|\bOPI\\\\", 1.5),
    cue(r"\b(?:what is|what's|forgot|remember)\b.{0,20}\busername\b", 2.0),
    cue(r"\busername\b.{0,30}\b(?:doesn'?t|does not|isn'?t|is not|not)\s+(?:exist|work|recogni[sz]ed|found|valid)\b", 2.5),
    cue(r"\baccount (?:is|was|got|has been) (?:disabled|locked|deactivated|suspended)\b|\block(?:ed)? (?:myself|me) out\b|\bcan'?t get into\b|\bcannot get into\b|\btoo many (?:tries|attempts)\b", 2.5),
)


def describe(ctx: Context, fields: Fields) -> str:
    return "trouble signing in to the Secure Portal."


SPEC = KindSpec(
    kind=TicketKind.LOGIN_HELP,
    cues=CUES,
    describe=describe,
    approval=Approval.NONE,
    next_step="The steps below reset your password. If they do not work, reply to this email and staff will help.",
)
