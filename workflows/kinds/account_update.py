"""account_update: change a host's account details: its name, phone or address, or its account contact.

A new account manager sets all three contact fields. A user's own new email address is an account
update too. Only the new text counts: a phone number in a signature is not a new phone number. The
account contact on file confirms first when the sender is not on file for the host.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from storage.enums import TicketKind
from storage.registry import Host
from workflows.extract import emails_in, labelled, occurrences, phone_spans, phones_in, sentences
from workflows.kinds.base import Approval, Context, Cue, Fields, KindSpec, Outcome, cue
from workflows.kinds.people import matching_user, person_in
from workflows.matching import fold, forget_registry_index

DETAIL = r"(?:phone|number|line|address|email|e-mail|contact|account manager|name|fax)"
CUES: tuple[Cue, ...] = (
    cue(rf"\b(?:new|change|changed|update|updated|different|correct)\b.{{0,40}}\b{DETAIL}\b", 2.0),
    cue(r"\b(?:office|offices|headquarters) (?:has|have) (?:moved|relocated)\b|\bmailing address\b|\bmoved (?:our )?offices?\b|\bwe(?:'ve| have)? moved\b|\bnew (?:main|office|direct) (?:number|line|phone)\b|\bname change\b|\bchanged? (?:our|its) name\b|\bvoted to change\b", 2.5),
    cue(r"(?<!as the )\bnew (?:account )?(?:manager|contact)\b|\b(?:change|update)\w*\b.{0,30}\b(?:account (?:manager|contact)|contact (?:person|on file))\b|\btak(?:e|ing) over as\b|\bhost (?:name|account|information)\b", 2.5),
    cue(r"\baccount (?:manager|contact)\b", 1.0),
    cue(r"\baccount (?:manager|contact) change\b|\bmake\b.{0,40}\b(?:the|our) (?:new )?account (?:manager|contact)\b", 2.5),
    cue(rf"\b{DETAIL}\b.{{0,30}}\b(?:has |have |is |was )?(?:changed|changing|moved)\b", 2.0),
    cue(r"\bupdate (?:it |this )?(?:on |in )?(?:my|our|the) (?:pdups |rups )?(?:account|user|profile|info\w*|record)\b", 2.0),
    cue(r"\bchange my (?:pdups |rups )?(?:e-?mail|address|phone|number|contact)\b", 2.5),
    cue(r"\bmy new (?:e-?mail|address|phone|number)\b|\bnew e-?mail address\b|\bis now\b", 1.5),
)
STREET = re.compile(
    r"\b(?:\d{1,6}|P\.?\s?O\.? Box \d+)[^\n,]{2,60},(?:[^\n,]{1,40},)?\s*[A-Z][A-Za-z .]+,?\s+(?:MT|Montana)\.?\s*\d{5}(?:-\d{4})?"
)


def _is_contact(ctx: Context, address: str) -> bool:
    return bool(ctx.host and ctx.host.contact_email.lower() == address.lower())


def _writer_is_contact(ctx: Context) -> bool:
    """The account contact wrote, from the address on file or, from another address, under the contact's
    own name. Only which field is meant follows from this: a sender not on file still has the change
    confirmed by the contact of record before staff see it."""
    if _is_contact(ctx, ctx.sender):
        return True
    return bool(ctx.host and ctx.host.contact_name and fold(ctx.sender_name) == fold(ctx.host.contact_name))


# "My old number (406) 555-1061 ... has been disconnected": a number given only to say it is going.
_OLD_PHONE_BEFORE = re.compile(r"\b(?:old|previous|former|was|from|instead of|not)\b[\w\s()-]{0,25}$", re.IGNORECASE)
_OLD_PHONE_AFTER = re.compile(r"^[^.;]{0,60}\b(?:disconnected|no longer|is going away|will be shut|retired)\b", re.IGNORECASE)


def _new_phones_in(sentence: str) -> list[str]:
    """The phones of a sentence that are not given as the old number."""
    kept = []
    for phone, at, end in phone_spans(sentence):
        if _OLD_PHONE_BEFORE.search(sentence[max(0, at - 30) : at]) or _OLD_PHONE_AFTER.search(sentence[end:]):
            continue
        kept.append(phone)
    return kept


def new_contact(ctx: Context) -> dict[str, str]:
    asks = r"\bnew (?:account )?(?:manager|contact)\b|\b(?:change|update|switch)\w*\b.{0,40}\b(?:account (?:manager|contact)|contact (?:person|on file))\b|\btak(?:e|ing) over as\b|\bcontact (?:should|to) be\b|\bwill be (?:our|the) (?:new )?(?:account )?(?:manager|contact)\b|\bmake (?:him|her|them|(?:[A-ZÀ-ÖØ-Þ][\w'’-]+\s*){1,3}?)(?:,[^,\n]{3,60},)?\s*(?:as )?(?:our|the) (?:new )?(?:account )?(?:manager|contact)\b|\bhand (?:the |our )?(?:pdups )?account\b.{0,80}\bover to\b|\b(?:list|make|name|put)\s+(?:[A-Z][\w'’-]+\s+){1,3}as (?:the|our) (?:new )?(?:account )?(?:manager|contact)\b"
    if not re.search(asks, ctx.body, re.IGNORECASE):
        return {}
    if re.search(r"\bI(?:'m| am| will be)\b.{0,30}\b(?:taking over|the new)\b", ctx.body, re.IGNORECASE):
        # The writer is the new manager: their own details, as they set them out or as they write.
        phones = phones_in(f"{ctx.body}\n{ctx.sign_off}")
        given = emails_in(labelled(ctx.body, "email", "e-mail") or "")
        person = {"name": labelled(ctx.body, "full name", "name") or ctx.sender_name,
                  "email": given[0] if given else ctx.sender, "phone": phones[0] if phones else None}
    else:
        person = person_in(ctx, ctx.body)
    found = {"contact_name": person["name"], "contact_email": person["email"], "contact_phone": person["phone"]}
    return {k: v for k, v in found.items() if v}


def new_name(ctx: Context) -> str | None:
    # "update our host name from Upper Missouri Education Cooperative to:" with the new name on its own line
    # "change our organization's name from X to Y."
    from_to = re.search(r"\bname from\s+(?:the\s+)?[A-Z][^.;\n]{2,150}?\s+to\s+(?:the\s+)?([A-Z][^.;,\n]{3,150})", ctx.body)
    if from_to:
        return from_to.group(1).strip(" .")
    below = re.search(r"\bname\b[^.]{0,80}?\bfrom\b[^.]{3,150}?\bto:?[ \t]*\n+[ \t]*([A-Z][^\n.;]{3,150})", ctx.body)
    if below:
        return below.group(1).strip(" .")
    for sentence in sentences(ctx.body):
        if not re.search(r"\bname\b|\b(?:is|are) now\b|\brenamed\b|\bnow called\b|\bknown as\b|\bofficially\b", sentence, re.IGNORECASE):
            continue
        quoted = re.findall(r"[\"“]([^\"”]{4,200})[\"”]", sentence)
        if quoted:
            return quoted[-1].strip(" .")
        match = re.search(r"\b(?:(?:is|are) now(?: officially)?(?: called| known as)?|renamed(?: to)?|now called|new name is|(?:will (?:now )?be|is now|are now) (?:known as|called)|chang(?:e|ed|ing) (?:our|the|its|their) name to)\s+(?:the\s+)?([A-Z](?:\bNo\.\s?(?=\d)|[^.,;\n]){3,150}(?:,? (?:Inc|LLC)\b\.?)?)", sentence)
        if match:
            return match.group(1).strip(" .")
    return None


def new_phone(ctx: Context) -> tuple[str, str] | None:
    """(field, phone): "my" line is the contact's phone when the contact writes, else the host's phone."""
    given = labelled(ctx.body, "new phone", "new phone number", "new number", "new direct line")
    if given and phones_in(given):
        mine = _is_contact(ctx, ctx.sender) and re.search(r"\b(?:my|I'm|I am)\b", ctx.body)
        return ("contact_phone" if mine else "phone"), phones_in(given)[0]
    parts = sentences(ctx.body)
    for n, sentence in enumerate(parts):
        if phones_in(sentence) and not re.search(r"\b(?:phone|number|line|cell)\b", sentence, re.IGNORECASE) and n:
            sentence = f"{parts[n - 1]} {sentence}"  # "My direct line has changed. Please use ... for me."
        if not re.search(r"\b(?:phone|number|line|cell)\b", sentence, re.IGNORECASE):
            continue
        if re.search(r"\b(?:hasn'?t|has not|stays?|same|unchanged|won'?t change|not changing)\b", sentence, re.IGNORECASE) and not re.search(r"\bnew\b", sentence, re.IGNORECASE):
            continue
        phones = _new_phones_in(sentence)
        if not phones:
            continue
        personal = re.search(r"\bmy (?:new )?(?:direct |cell |office |contact |work )?(?:office )?(?:phone|number|line|cell)\b|\bfor me\b",
                             sentence, re.IGNORECASE)
        named_contact = re.search(r"\bcontact(?:'s)? (?:phone|number|line)\b", sentence, re.IGNORECASE)
        field = "contact_phone" if named_contact or (personal and _writer_is_contact(ctx)) else "phone"
        return field, phones[0]
    return None


def new_address(ctx: Context) -> str | None:
    value = labelled(ctx.body, "new address", "address", "new mailing address", "mailing address")
    if value:
        return value.strip(" .")
    # "...address to:" or "a new mailing address effective immediately:" above the address's own lines
    block = re.search(r"\baddress\b[^\n]{0,40}?(?:\bto:?|:)\s*\n+((?:[^\n]+\n?){1,4})", ctx.body, re.IGNORECASE)
    if block:
        # An address set out on its own lines: street and town, without the organisation's name line.
        lines = [l.strip(" ,") for l in block.group(1).splitlines() if l.strip()]
        lines = [l for l in lines if not (ctx.host and fold(l) == fold(ctx.host.name)) and not l.lower().startswith(("phone", "email"))]
        joined = ", ".join(lines)
        if re.search(r"\b(?:MT|Montana)\b\.?\s*\d{5}", joined):
            return joined
    if re.search(r"\baddress\b|\bmoved\b|\boffices?\b|\bbuilding\b", ctx.body, re.IGNORECASE):
        match = STREET.search(ctx.body)
        if match:
            return match.group(0).strip(" .")
    return None


_OLD_VALUE_BEFORE = re.compile(r"(?:old|from|instead of|previous|former|retir\w*|replac\w*|drop\w*|clos\w*)\b(?:\W+\w+){0,2}?\W+$")


def _given_as_old(address: str, sentence: str) -> bool:
    """ "from jdoe@x.org", "my old address, jdoe@x.org": the address is the one being replaced. Looked
    for by position, since a pattern made from each address would be compiled anew every time."""
    lowered = sentence.lower()
    return any(_OLD_VALUE_BEFORE.search(lowered, 0, at) for at in occurrences(address.lower(), lowered))


def new_email(ctx: Context) -> tuple[str, str] | None:
    given = emails_in(labelled(ctx.body, "new email", "new e-mail", "new email address", "new") or "")
    if given:
        return ("contact_email" if _is_contact(ctx, ctx.sender) else "email"), given[0]
    parts = sentences(ctx.body)
    # "...change the contact email from this gmail to" with the address alone on the next line
    windows = [" ".join(parts[n : n + 2]) if not emails_in(parts[n]) else parts[n] for n in range(len(parts))]
    for sentence in windows:
        if not re.search(r"\b(?:e-?mail|address)\b", sentence, re.IGNORECASE):
            continue
        if not re.search(r"\b(?:new|now|chang|update|use|moved|switch|replac|set\w* (?:me )?up|shut\w* down|going away)\w*\b", sentence, re.IGNORECASE):
            continue
        found = [e for e in emails_in(sentence) if not e.startswith(("opipdups@", "oipdups@", "opirups@"))]
        if not found:
            continue
        old = next((e for e in found if _given_as_old(e, sentence)), None)
        new = next((e for e in found if e != old), None)
        if new is None:
            continue
        owner = old or ctx.sender
        if re.search(r"\bfrom this\b", sentence, re.IGNORECASE):
            owner = ctx.sender
        return ("contact_email" if _is_contact(ctx, owner) or _is_contact(ctx, ctx.sender) else "email"), new
    return None


def extract(ctx: Context) -> Fields:
    changes: dict[str, str] = dict(new_contact(ctx))
    if not changes:
        email = new_email(ctx)
        if email:
            changes[email[0]] = email[1]
        phone = new_phone(ctx)
        if phone:
            changes[phone[0]] = phone[1]
    name = new_name(ctx)
    if name and (not ctx.host or fold(name) != fold(ctx.host.name)):
        changes["name"] = name
    address = new_address(ctx)
    if address:
        changes["address"] = address
    return {"changes": changes}


def missing(ctx: Context, fields: Fields) -> list[str]:
    return ([] if ctx.host else ["host"]) + ([] if fields.get("changes") else ["changes"])


def describe(ctx: Context, fields: Fields) -> str:
    what = ", ".join(f"{k.replace('_', ' ')} → {v}" for k, v in (fields.get("changes") or {}).items())
    host = ctx.host.name if ctx.host else "your organisation"
    return f"an update to the account of {host}" + (f": {what}." if what else ".")


HOST_FIELDS = ("name", "phone", "address", "contact_name", "contact_email", "contact_phone")


def apply(session: Session, ticket: object, actor: str) -> Outcome:
    host = session.get(Host, ticket.host_id)  # type: ignore[attr-defined]
    changes = dict(ticket.fields.get("changes") or {})  # type: ignore[attr-defined]
    user_email = changes.pop("email", None)
    before = {k: getattr(host, k) for k in changes if k in HOST_FIELDS}
    for key, value in changes.items():
        if key in HOST_FIELDS:
            setattr(host, key, value)
    after = {k: getattr(host, k) for k in before}
    if user_email:
        user = matching_user(session, host.host_id, None, ticket.requester)  # type: ignore[attr-defined]
        if user is None:
            raise LookupError(f"no user of {host.name} writes from {ticket.requester}")  # type: ignore[attr-defined]
        before[f"user {user.username} email"] = user.email
        user.email = user_email
        after[f"user {user.username} email"] = user_email
    forget_registry_index()
    summary = f"Updated the account of {host.name}: " + ", ".join(f"{k.replace('_', ' ')} is now {v}" for k, v in after.items())
    return Outcome("host", host.host_id, "update", before, after, summary)


SPEC = KindSpec(
    kind=TicketKind.ACCOUNT_UPDATE,
    cues=CUES,
    extract=extract,
    missing=missing,
    describe=describe,
    approval=Approval.STAFF_VERIFIED,
    apply=apply,
)
