"""What every kind of request declares, in one place: how it is recognised, its fields, what must be
present, whether staff approve it, and what approval does."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from storage.enums import TicketKind
from storage.registry import Event
from workflows.dates import DateMention
from workflows.literals import lowered, may_match, required_words
from workflows.matching import HostFacts, HostMatch, RegistryIndex
from workflows.parsing import ParsedMail


@dataclass(frozen=True)
class Cue:
    """A phrase that suggests a kind. Weights add up; the kind with the highest total wins.

    With ``also``, both phrases must appear ("we held it" and "no certificates"); two plain searches
    are much cheaper than one pattern that spans the text between them. ``needs`` and ``also_needs``
    are the words each pattern cannot match without: a text with none of them is not searched.
    """

    pattern: re.Pattern[str]
    weight: float
    also: re.Pattern[str] | None = None
    needs: frozenset[str] = frozenset()
    also_needs: frozenset[str] = frozenset()

    def search(self, text: str) -> bool:
        words = lowered(text)
        if not may_match(self.needs, words) or not self.pattern.search(text):
            return False
        return self.also is None or (may_match(self.also_needs, words) and bool(self.also.search(text)))


def cue(regex: str, weight: float, also: str | None = None) -> Cue:
    """A case-blind cue whose ``.`` crosses line breaks, since hosts' sentences are often wrapped."""
    flags = re.IGNORECASE | re.DOTALL
    pattern, second = re.compile(regex, flags), re.compile(also, flags) if also else None
    return Cue(pattern, weight, second, required_words(pattern), required_words(second) if second else frozenset())


class Approval(str, enum.Enum):
    NONE = "none"  # handled at once (self-service answers, mailing list)
    STAFF = "staff"  # staff approve or reject in Slack or with `pdubot tickets approve`
    STAFF_VERIFIED = "staff_verified"  # the account contact confirms first when the sender is not on file


@dataclass
class Context:
    """Everything a kind may look at while reading one message."""

    session: Session
    parsed: ParsedMail
    subject: str  # without Re:, Fwd: or our [PDU-n] tag
    body: str  # only what the sender wrote this time
    context_text: str  # quoted and forwarded text: context, never a request
    sent_on: dt.date  # the day of the Date header, in Mountain Time
    index: RegistryIndex
    host_match: HostMatch
    host: HostFacts | None = None  # from the registry index: id, name and account contact
    event: Event | None = None
    event_how: str = ""
    mentions: list[DateMention] = field(default_factory=list)
    host_events: list[Event] = field(default_factory=list)
    sign_off: str = ""  # the signature block under the new text: read for the host, never for the request
    note: str = ""  # the host's own words, before any forwarded text was added to ``body``
    is_reply: bool = False

    @property
    def text(self) -> str:
        return f"{self.subject}\n{self.body}"

    @property
    def sender(self) -> str:
        return self.parsed.from_addr

    @property
    def sender_name(self) -> str:
        """The display name, with Outlook's "Last, First" turned round."""
        name = self.parsed.from_name.strip().strip('"')
        if name.count(",") == 1:
            last, first = (part.strip() for part in name.split(","))
            name = f"{first} {last}"
        return name


Fields = dict[str, Any]


def no_fields(ctx: Context) -> Fields:
    return {}


def nothing_missing(ctx: Context, fields: Fields) -> list[str]:
    return []


@dataclass(frozen=True)
class Outcome:
    """What approving a ticket changed: the registry row before and after, and a line for the host."""

    entity: str
    entity_id: str
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class KindSpec:
    kind: TicketKind
    cues: tuple[Cue, ...]
    describe: Callable[[Context, Fields], str]  # "what we understood", in one plain sentence for the host
    extract: Callable[[Context], Fields] = no_fields
    missing: Callable[[Context, Fields], list[str]] = nothing_missing
    approval: Approval = Approval.STAFF
    about_event: bool = False
    prefer_ended: bool = False  # the event this kind is about has usually ended already
    next_step: str = "OPI Professional Learning staff will review your request and email you when it is done."
    apply: Callable[[Session, Any, str], Outcome] | None = None

    def score(self, ctx: Context) -> float:
        """Evidence for this kind. A reply's subject is the old conversation's, so it counts for half."""
        subject_weight = 0.5 if ctx.is_reply else 1.0
        body = sum(c.weight for c in self.cues if c.search(ctx.body))
        subject = sum(c.weight for c in self.cues if c.search(ctx.subject))
        return body + subject_weight * subject


# The follow-up question asked for each missing piece, in the host's words.
QUESTIONS: dict[str, str] = {
    "host": "the name of your organisation as it appears in PDUPS (your provider name)",
    "event": "which event this is about: its title and date, or its event ID",
    "count": "the number of certificates issued for the event",
    "changes": "exactly what should change, and the new value",
    "person": "the full name and email address of the person",
}
