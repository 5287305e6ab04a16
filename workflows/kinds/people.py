"""Shared reading of the person a user or mailing-list request is about (not a kind of its own)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

import sqlalchemy as sa
from rapidfuzz import fuzz
from sqlalchemy.orm import Session

from storage.registry import User
from workflows.extract import NOT_NAME_WORDS, emails_in, labelled, person_names, phones_in
from workflows.kinds.base import Context
from workflows.matching import fold


def ascii_letters(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalpha())


def username_for(session: Session, full_name: str) -> str:
    """First initial + last name (John Doe → JDoe), made unique with 2, 3... as PDUPS does, against the
    users table itself (reading proposes one from the registry index, which may be a second old)."""
    base = username_base(full_name)
    if not base:
        return ""
    taken = {u.lower() for u in session.scalars(sa.select(User.username).where(User.username.ilike(f"{base}%")))}
    return unique_username(base, taken)


def username_taken(session: Session, username: str) -> bool:
    query = sa.select(User.username).where(sa.func.lower(User.username) == username.lower()).limit(1)
    return session.scalar(query) is not None


# Words that begin a family name: "Mary Beth Van Wyk" is MVanWyk, "Tomás de la Cruz" is TDeLaCruz.
SURNAME_PARTICLES = frozenset("van von de del della der den la le da di du st".split())
# Second given names of the usual double ones (Mary Beth, Ruth Ann): part of the first name, not the last.
SECOND_GIVEN_NAMES = frozenset("ann anne beth jo lee lynn marie sue kay jean jane mae rose louise ellen".split())


def username_base(full_name: str) -> str:
    """John Doe → JDoe: the first initial and the last name, in ASCII letters.

    Every word after the first belongs to the last name (Rachel Two Bulls is RTwoBulls), except the second
    of a usual double given name (Mary Beth Kranz is MKranz) and any word before a surname particle (Mary
    Beth Van Wyk is MVanWyk).
    """
    words = [w for w in re.split(r"\s+", full_name.strip()) if w]
    if not words:
        return ""
    particle = next((n for n, w in enumerate(words[1:], 1) if w.lower().strip(".") in SURNAME_PARTICLES), None)
    given = 2 if len(words) > 2 and words[1].lower() in SECOND_GIVEN_NAMES else 1
    family = words[particle:] if particle is not None else words[given:]
    first, last = words[0], "".join(w[0].upper() + w[1:] for w in family)
    return ascii_letters(first)[:1].upper() + ascii_letters(last)


def unique_username(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base`` with the first of 2, 3... that no username in ``taken`` (lower-cased) has."""
    if base.lower() not in taken:
        return base
    suffix = 2
    while f"{base}{suffix}".lower() in taken:
        suffix += 1
    return f"{base}{suffix}"


def other_addresses(ctx: Context, text: str) -> list[str]:
    mailbox_like = ("opipdups@", "oipdups@", "opirups@")
    return [e for e in emails_in(text) if not e.startswith(mailbox_like)]


def name_for_address(names: list[str], address: str) -> str | None:
    """The written name that goes with an address (cnoble@ → Cody Noble), when one clearly does."""
    local = re.sub(r"[^a-z]", "", address.split("@")[0].lower())
    best, best_score = None, 0.0
    for name in names:
        parts = [ascii_letters(p).lower() for p in name.split()]
        if not parts:
            continue
        last, first = parts[-1], parts[0]
        score = 0.0
        if last and last in local:
            score = 80 + (10 if first[:1] and local.startswith(first[:1]) else 0)
        elif first and first in local:
            score = 60
        if score > best_score:
            best, best_score = name, score
    return best


def person_in(ctx: Context, text: str, exclude_sender: bool = True) -> dict[str, str | None]:
    """Name, email and phone of the person a request is about, read from the new text only."""
    name = labelled(text, "name", "full name", "user", "new user")
    emails = other_addresses(ctx, text)
    if exclude_sender:
        emails = [e for e in emails if e != ctx.sender] or []
    email = (labelled(text, "email", "e-mail", "email address") or "").lower() or None
    email = emails_in(email)[0] if email and emails_in(email) else (emails[0] if emails else None)
    names = [n for n in person_names(text) if not exclude_sender or fold(n) != fold(ctx.sender_name)]
    if name is None and email:
        name = name_for_address(names, email)
    if name is None and names:
        name = names[0]
    phones = phones_in(text)
    return {"name": name, "email": email, "phone": phones[0] if phones else None}


def complete_from_context(ctx: Context, person: dict[str, str | None]) -> dict[str, str | None]:
    """Fill a first-name-only person ("set Mara up") from the forwarded message they wrote."""
    name = person.get("name") or ""
    first = _first_name_only(ctx.body) if not name else (name if " " not in name else "")
    if not first or not ctx.context_text:
        return person
    full = next((n for n in person_names(ctx.context_text) if n.split()[0] == first), None)
    if full is None:
        return person
    completed = dict(person, name=full)
    if not completed.get("email"):
        completed["email"] = next((e for e in emails_in(ctx.context_text) if name_for_address([full], e) == full), None)
    return completed


def _first_name_only(text: str) -> str:
    match = re.search(r"\b(?:set|add|give|create)\s+([A-Z][a-z]+)\s+(?:up|as|access|a\b)", text)
    if match:
        return match.group(1)
    # "Nicole asked me to pass this along - please take her off the list"
    asked = re.search(r"\b([A-Z][a-z]+) (?:asked|wants|would like|needs)\b", text)
    return asked.group(1) if asked and asked.group(1) not in NOT_NAME_WORDS else ""


def matching_user(session: Session, host_id: str | None, name: str | None, email: str | None) -> User | None:
    """The host's user a removal names, by address first and then by a close name."""
    query = sa.select(User).where(User.status == "active")
    if host_id:
        query = query.where(User.host_id == host_id)
    users = list(session.scalars(query))
    if email:
        for user in users:
            if user.email.lower() == email:
                return user
    if name:
        scored = [(fuzz.token_sort_ratio(fold(u.full_name), fold(name)), u) for u in users]
        scored = [s for s in scored if s[0] >= 85]
        if scored:
            return max(scored, key=lambda s: s[0])[1]
    return None


def users_named_in(session: Session, host_id: str | None, text: str) -> list[str]:
    """The full names of the host's active users that appear in the text (however it is capitalised)."""
    if not host_id:
        return []
    folded = fold(text)
    names = session.scalars(sa.select(User.full_name).where(User.host_id == host_id, User.status == "active"))
    return [name for name in names if name and fold(name) in folded]
