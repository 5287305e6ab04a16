"""What every kind of request declares, in one place: how it is recognised, its fields, what must be
present, whether staff approve it, and what approval does."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from storage.enums import TicketKind
from workflows.dates import DateMention
from workflows.literals import Needs, WordSet, lowered, may_match, meets, required_words
from workflows.matching import EventFacts, HostFacts, HostMatch, RegistryIndex
from workflows.parsing import ParsedMail


@dataclass(frozen=True, eq=False)  # compared by identity: hashing the patterns on every lookup was costly
class Cue:
    """A phrase that suggests a kind. Weights add up; the kind with the highest total wins.

    With ``also``, both phrases must appear ("we held it" and "no certificates"); two plain searches
    are much cheaper than one pattern that spans the text between them. ``needs`` and ``also_needs``
    are the words each pattern cannot match without: a text that lacks them is not searched.
    """

    pattern: re.Pattern[str]
    weight: float
    also: re.Pattern[str] | None = None
    needs: Needs = ()
    also_needs: Needs = ()

    def search(self, text: str) -> bool:
        words = lowered(text)
        if not may_match(self.needs, words) or not self.pattern.search(text):
            return False
        return self.also is None or (may_match(self.also_needs, words) and bool(self.also.search(text)))

    def search_knowing(self, text: str, present: frozenset[str]) -> bool:
        """``search``, for a text whose needed words were found already (``CueIndex``)."""
        if not meets(self.needs, present) or not self.pattern.search(text):
            return False
        return self.also is None or (meets(self.also_needs, present) and bool(self.also.search(text)))

    @property
    def words(self) -> set[str]:
        return {word for clause in self.needs + self.also_needs for word in clause}


def cue(regex: str, weight: float, also: str | None = None) -> Cue:
    """A case-blind cue whose ``.`` crosses line breaks, since hosts' sentences are often wrapped."""
    flags = re.IGNORECASE | re.DOTALL
    pattern, second = re.compile(regex, flags), re.compile(also, flags) if also else None
    return Cue(pattern, weight, second, required_words(pattern), required_words(second) if second else ())


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
    event: EventFacts | None = None
    event_how: str = ""
    mentions: list[DateMention] = field(default_factory=list)
    host_events: list[EventFacts] = field(default_factory=list)
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


@dataclass(frozen=True, eq=False)  # one per kind, and a dictionary key while reading: hashed by identity
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


class CueIndex:
    """Every kind's cues, tried on a text together.

    Most cues cannot match a given text, and most of the time went on finding that out cue by cue. Here
    the words any cue needs are looked for in the text once (``WordSet``), and only cues whose words are
    all there are searched. The result is exactly the cues whose ``search`` succeeds, in kind order.
    """

    def __init__(self, specs: tuple[KindSpec, ...]) -> None:
        self.owner: dict[Cue, KindSpec] = {c: spec for spec in specs for c in spec.cues}
        self.cues = tuple(self.owner)
        self.words = WordSet(set().union(*(c.words for c in self.cues)))
        # Each cue is listed under the words of its most telling clause: a cue none of whose words the
        # text holds is not even looked at.
        self._listed: dict[str, list[int]] = defaultdict(list)
        self._unlisted: list[int] = []
        for n, item in enumerate(self.cues):
            for word in item.needs[0] if item.needs else ():
                self._listed[word].append(n)
            if not item.needs:
                self._unlisted.append(n)

    def found(self, text: str) -> tuple[Cue, ...]:
        present = self.words.present_in(lowered(text))
        candidates = set(self._unlisted)
        for word in present:
            candidates.update(self._listed.get(word, ()))
        return tuple(c for c in (self.cues[n] for n in sorted(candidates)) if c.search_knowing(text, present))

    def weights(self, text: str) -> dict[KindSpec, float]:
        """Each kind's evidence in ``text``: the weights of its cues found there, added in the kind's order."""
        totals: dict[KindSpec, float] = {}
        for found in self.found(text):
            spec = self.owner[found]
            totals[spec] = totals.get(spec, 0) + found.weight
        return totals


# The follow-up question asked for each missing piece, in the host's words.
QUESTIONS: dict[str, str] = {
    "host": "the name of your organisation as it appears in PDUPS (your provider name)",
    "event": "which event this is about: its title and date, or its event ID",
    "count": "the number of certificates issued for the event",
    "changes": "exactly what should change, and the new value",
    "person": "the full name and email address of the person",
}
