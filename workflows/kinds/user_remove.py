"""user_remove: deactivate a person's PDUPS login when they leave a host.

The account contact confirms first when the sender is not on file for the host.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from storage.enums import TicketKind
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, Outcome, cue
from workflows.kinds.people import matching_user, person_in, users_named_in
from workflows.matching import forget_registry_index

CUES: tuple[Cue, ...] = (
    cue(r"\b(?:remove|deactivate|delete|disable|revoke|terminate|close|inactivate|turn off)\b.{0,90}\b(?:users?|access|login|log-in|account|username|credentials)\b", 3.0),
    cue(r"\bno longer (?:with|works?|working|employed|at|here|a user)\b|\bhas left\b|\bleft (?:the|our) (?:district|school|org\w*|college|university|agency|position)|\b(?<!be )retired\b|\bresigned\b|\btook a (?:job|position)\b|\blast day\b|\baccepted a position\b|\bmoved on\b|\bleaving\b|\bstepping down\b|\btransferred\b|\banymore\b|\bmoved to a (?:new )?(?:job|position|role|district|school|different)\b", 2.0),
    cue(r"\btake (?:him|her|them)\b.{0,20}\boff\b|\b(?:his|her|their) (?:login|access|user|account|username)\b", 2.0),
    cue(r"\bdeactivat\w+\b", 2.0),
    cue(r"\b(?:close|remove|deactivate|delete|shut off|turn off)\b.{0,10}\bmy\b.{0,15}\b(?:pdups |rups )?(?:login|account|user|access)\b", 3.0),
    cue(r"\b(?:user|login|log-in|access|account|username)\b.{0,30}\b(?:be |been |get )?(?:deactivated|removed|disabled|turned off|shut off|closed)\b", 3.0),
    cue(r"\bremove my (?:pdups |rups )?(?:user )?account\b|\bremove (?:him|her|them)\b", 1.5),
)


SELF_REMOVAL = re.compile(
    r"\b(?:remove|close|deactivate|delete|disable|shut off|turn off|cancel)\b.{0,10}\b(?:my|me)\b.{0,15}\b(?:account|user|login|access|username)\b",
    re.IGNORECASE)


def extract(ctx: Context) -> Fields:
    if SELF_REMOVAL.search(ctx.note):
        return {"person": {"name": ctx.sender_name or None, "email": ctx.sender, "phone": None}}
    forwarded_name, forwarded_address = ctx.parsed.forwarded_from
    if forwarded_address and SELF_REMOVAL.search(ctx.body):
        # "See below": the forwarded writer asked for their own login to go.
        return {"person": {"name": forwarded_name or None, "email": forwarded_address, "phone": None}}
    if SELF_REMOVAL.search(ctx.body):
        return {"person": {"name": ctx.sender_name or None, "email": ctx.sender, "phone": None}}
    person = person_in(ctx, ctx.body)
    # "Deactivate Kristin Moberg" as the subject, "As Kristin mentioned, ..." in the body.
    named = users_named_in(ctx.session, ctx.host.host_id if ctx.host else None, f"{ctx.subject}\n{ctx.body}")
    if named and (not person["name"] or person["name"] not in named):
        person["name"] = named[0]
    person["phone"] = None
    return {"person": person}


def missing(ctx: Context, fields: Fields) -> list[str]:
    person = fields.get("person") or {}
    return ([] if ctx.host else ["host"]) + ([] if person.get("name") or person.get("email") else ["person"])


def describe(ctx: Context, fields: Fields) -> str:
    person = fields.get("person") or {}
    host = f" from {ctx.host.name}" if ctx.host else ""
    return f"{person.get('name') or person.get('email') or 'a user'} should no longer have a PDUPS login{host}."


def apply(session: Session, ticket: object, actor: str) -> Outcome:
    person = ticket.fields["person"]  # type: ignore[attr-defined]
    user = matching_user(session, ticket.host_id, person.get("name"), person.get("email"))  # type: ignore[attr-defined]
    if user is None:
        raise LookupError(f"no active user of this host matches {person.get('name') or person.get('email')}")
    before = {"status": user.status}
    user.status = "inactive"
    forget_registry_index()
    return Outcome("user", user.username, "deactivate", before, {"status": "inactive"}, f"Deactivated the PDUPS user {user.username} ({user.full_name}).")


SPEC = KindSpec(
    kind=TicketKind.USER_REMOVE,
    cues=CUES,
    extract=extract,
    missing=missing,
    describe=describe,
    approval=Approval.STAFF_VERIFIED,
    apply=apply,
    next_step="OPI Professional Learning staff will deactivate the login and email you when it is done.",
)
