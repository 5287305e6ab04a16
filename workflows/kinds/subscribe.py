"""subscribe: join the mailing list (PLP Insider, transition updates, Network Collaborative reminders).

Joining needs double opt-in: the address must confirm before it receives anything, so nobody can
sign up someone else.
"""

from __future__ import annotations

import re

from storage.enums import TicketKind
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, cue
from workflows.kinds.people import complete_from_context, person_in
from workflows.extract import labelled, organisations_in

LISTS = r"(?:mailing list|e-?mail list|newsletter|plp insider|insider|transition updates?|updates|monthly (?:e-?mails?|mailing)|distribution list|listserv|(?:transition|update|updates|newsletter|insider) list)"
CUES: tuple[Cue, ...] = (
    cue(rf"\b(?:add me|sign me up|sign up|subscribe|join|be added|include me|put me on|count me in|get (?:it|this|the \w+) directly|receive|get|start getting|be on)\b.{{0,80}}\b{LISTS}\b", 3.5),
    cue(r"(?<!un)\bsubscrib(?:e|ed|ing)\b", 2.0),
    cue(r"\bplp insider\b|\bmailing list\b|\btransition updates?\b|\bnewsletter\b", 1.0),
    cue(r"\badd me\b(?! as (?:a|an) user)|\bsign me up\b|\bget (?:it|them) directly\b|\bcount me in\b|\bbe on (?:the|your) (?:mailing |e-?mail )?list\b|\blike to (?:receive|get|be on)\b", 2.0),
    cue(rf"\badd\b.{{0,60}}\bto (?:the|your)\b.{{0,30}}\b{LISTS}\b", 3.0),
)


def read_person(ctx: Context) -> dict[str, str | None]:
    # People often sign with the very details they want used ("Ingrid Sørensen / isorensen@fvcc.edu").
    person = person_in(ctx, f"{ctx.body}\n{ctx.sign_off}", exclude_sender=False)
    organization = labelled(ctx.body, "organization", "organisation", "org", "district", "school", "company")
    if re.search(r"\b(?:her|him|them)\b", ctx.body, re.IGNORECASE):
        person = complete_from_context(ctx, {**person, "name": None} if person["email"] in (None, ctx.sender) else person)
    email = person["email"] or ctx.sender
    # Someone signing up a colleague gives the colleague's name with the colleague's address.
    someone_else = person["name"] if email != ctx.sender else None
    name = labelled(ctx.body, "name", "full name") or someone_else or ctx.sender_name or person["name"]
    if ctx.host is not None:
        organization = ctx.host.name
    elif organization is None:
        # The sign-off says where the writer works; the body may name other organisations in passing.
        written = organisations_in(ctx.sign_off) or organisations_in(ctx.body)
        organization = written[0] if written else None
    return {"name": name or None, "email": email, "organization": organization}


def extract(ctx: Context) -> Fields:
    return {"person": read_person(ctx)}


def describe(ctx: Context, fields: Fields) -> str:
    email = (fields.get("person") or {}).get("email")
    return f"a request to add {email} to the PLP Insider and transition updates mailing list."


SPEC = KindSpec(
    kind=TicketKind.SUBSCRIBE,
    cues=CUES,
    extract=extract,
    describe=describe,
    approval=Approval.NONE,
    next_step="Please confirm by replying to this email with the word YES. Nothing is sent to the list until you do.",
)
