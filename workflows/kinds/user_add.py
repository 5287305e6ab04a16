"""user_add: give a new person their own PDUPS login for a host (logins are never shared).

The account contact confirms first when the sender is not on file for the host.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from storage.enums import TicketKind
from storage.registry import User
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, Outcome, cue
from workflows.extract import phones_in
from workflows.kinds.people import complete_from_context, other_addresses, person_in, unique_username, username_base, username_for, username_taken
from workflows.matching import forget_registry_index

ACCESS = r"(?:user(?:name)?|login|log-in|log in|account|access|credentials)"
CUES: tuple[Cue, ...] = (
    cue(rf"\b(?:add|set up|setup|set \w+ up|create|give|grant|get)\b.{{0,80}}\b(?:as (?:a|an) (?:new )?user|{ACCESS})\b", 3.0),
    cue(r"\b(?:new|additional|another|second) (?:pdups |rups )?user\b|\bown (?:pdups |rups )?(?:login|username|account)\b", 2.5),
    cue(r"\b(?:request|need|needs|want|like)\w*\s+(?:a|an|another|her|his|their)\s+(?:own\s+)?(?:new\s+)?(?:pdups\s+|rups\s+)?(?:user(?:name)?|login|log-in|account)\b|\banother (?:pdups |rups )?(?:login|user)\b", 3.0),
    cue(r"\b(?:will be|help(?:ing)?|to help|take over|taking over)\b.{0,40}\b(?:enter(?:ing)?|record(?:ing)?|manag(?:e|ing))\b.{0,30}\b(?:events?|certificates?|counts?)", 2.0),
    cue(r"\bset (?:her|him|them) up\b|\bnew (?:staff member|hire|employee|coordinator|assistant)\b", 1.5),
    cue(r"\bas (?:a|an) (?:new )?user\b|\bput\b.{1,40}\bon as\b|\bset\b.{1,40}?\bup with\b.{0,30}\b(?:login|user|account|access|username)", 3.0),
)


def extract(ctx: Context) -> Fields:
    if _self_request(ctx):
        phones = phones_in(f"{ctx.body}\n{ctx.sign_off}")
        # "Please use my work email, ...": an address the writer gives beats the one they write from.
        given = [e for e in other_addresses(ctx, ctx.body) if e != ctx.sender]
        person = {"name": ctx.sender_name or None, "email": given[0] if given else ctx.sender,
                  "phone": phones[0] if phones else None}
    else:
        person = complete_from_context(ctx, person_in(ctx, ctx.body))
    fields: Fields = {"person": person}
    if person["name"]:
        # Proposed from the registry index; approval checks it again against the users table.
        fields["username"] = unique_username(username_base(person["name"]), ctx.index.usernames)
    return fields


def _self_request(ctx: Context) -> bool:
    return bool(re.search(r"\b(?:could|can|may) i (?:please )?(?:get|have)\b|\bmy own\b|\bgive me\b|\badd me as\b", ctx.body, re.IGNORECASE))


def missing(ctx: Context, fields: Fields) -> list[str]:
    person = fields.get("person") or {}
    return ([] if ctx.host else ["host"]) + ([] if person.get("name") and person.get("email") else ["person"])


def describe(ctx: Context, fields: Fields) -> str:
    person = fields.get("person") or {}
    host = f" for {ctx.host.name}" if ctx.host else ""
    return f"a new PDUPS user, {person.get('name') or 'someone'}{host}."


def apply(session: Session, ticket: object, actor: str) -> Outcome:
    fields = ticket.fields  # type: ignore[attr-defined]
    person = fields["person"]
    username = fields.get("username") or ""
    if not username or username_taken(session, username):  # taken since the ticket was read
        username = username_for(session, person["name"])
    user = User(
        username=username,
        full_name=person["name"],
        email=(person.get("email") or "").lower(),
        phone=person.get("phone") or "",
        host_id=ticket.host_id,  # type: ignore[attr-defined]
        status="active",
    )
    session.add(user)
    forget_registry_index()
    after = {"username": username, "full_name": user.full_name, "email": user.email, "host_id": user.host_id}
    return Outcome("user", username, "add", {}, after, f"Created the PDUPS user {username} for {user.full_name}.")


SPEC = KindSpec(
    kind=TicketKind.USER_ADD,
    cues=CUES,
    extract=extract,
    missing=missing,
    describe=describe,
    approval=Approval.STAFF_VERIFIED,
    apply=apply,
    next_step="OPI Professional Learning staff will set up the login and email you the username.",
)
