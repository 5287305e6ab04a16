"""Match a message to a host and an event in the registry, the way staff would.

Hosts are tried in the order staff use: the sender's address (a user or the account contact on file),
then the organisation's mail domain, then the host named in the text. Hosts are asked to give their
"provider name", and often write it as an abbreviation (GFPS, MCTM), so abbreviations are derived from
every host's name and mail domain. Fuzzy matching only scores hosts that share a distinctive word or an
abbreviation with the text, which keeps it fast with thousands of hosts.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import heapq
import re
import threading
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import sqlalchemy as sa
from rapidfuzz import fuzz
from sqlalchemy.orm import Session

from storage.enums import EventStatus
from storage.registry import Event, Host, User, location
from workflows.dates import DateMention

# Mail providers anyone can use: their domain says nothing about the organisation.
PUBLIC_DOMAINS = frozenset(
    """gmail.com googlemail.com yahoo.com ymail.com hotmail.com outlook.com live.com msn.com icloud.com me.com
    mac.com aol.com comcast.net protonmail.com proton.me gmx.com mail.com charter.net bresnan.net
    blackfoot.net mt.net montana.com q.com centurylink.net""".split()
)
# Words too common in host names to tell hosts apart on their own.
GENERIC_WORDS = frozenset(
    """the of and for a an in at on to public schools school district districts county university college
    community montana mt association council center centre society education educational inc llc
    no department dept office professional development system state""".split()
)
ACRONYM_SKIP = frozenset({"of", "the", "and", "for", "&", "a", "an", "in", "at", "no"})
HOST_NAME_THRESHOLD = 88
CHECK_SECONDS = 1.0  # how often a process asks whether the registry changed

_WORD = re.compile(r"[a-z0-9]+")
_CAPS = re.compile(r"\b[A-Z][A-Za-z0-9]{1,7}\b")


CACHED_FOLD_CHARS = 200  # names and titles recur and are cached; a message's text is folded once


def fold(text: str) -> str:
    """Lower-case, accents removed, punctuation to spaces: the form every comparison uses."""
    return _fold_short(text) if len(text) <= CACHED_FOLD_CHARS else _fold(text)


@functools.lru_cache(maxsize=65536)
def _fold_short(text: str) -> str:
    return _fold(text)


def _fold(text: str) -> str:
    if text.isascii():  # nothing to decompose: the common case, at C speed
        return " ".join(_WORD.findall(text.lower()))
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(_WORD.findall(ascii_text))


def acronym(name: str) -> str:
    words = [w for w in re.split(r"[\s\-/]+", name) if w and w.lower() not in ACRONYM_SKIP]
    return "".join(w[0] for w in words if w[0].isalpha()).lower()


def _acronyms_for(host: Host) -> set[str]:
    """GFPS for Great Falls Public Schools; CSPD and Region IV CSPD for the Region IV CSPD; the domain's stem."""
    found = {acronym(host.name)}
    roman = re.match(r"^(region [ivx]+|district \d+)\s+(.*)$", host.name, re.IGNORECASE)
    if roman:
        found.add(f"{fold(roman.group(1))} {acronym(roman.group(2))}")
    for part in re.findall(r"\(([A-Za-z]{2,8})\)", host.name):
        found.add(part.lower())
    stem = host.domain.split(".")[0] if host.domain and host.domain not in PUBLIC_DOMAINS else ""
    if 2 <= len(stem) <= 8:
        found.add(stem)
    return {a for a in found if len(a) >= 2}


@dataclass(frozen=True)
class HostFacts:
    """What reading a message needs to know of a host, without a query for it."""

    host_id: str
    name: str
    contact_email: str
    contact_name: str = ""

    @classmethod
    def of(cls, host: Host) -> HostFacts:
        return cls(host.host_id, host.name, host.contact_email, host.contact_name or "")


@dataclass
class RegistryIndex:
    """What matching needs from the hosts and users tables, held in memory."""

    names: dict[str, str] = field(default_factory=dict)  # host_id -> folded name
    hosts: dict[str, HostFacts] = field(default_factory=dict)
    by_address: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_domain: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_acronym: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_word: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_username: dict[str, str] = field(default_factory=dict)  # lower-cased username -> host_id, active users
    usernames: set[str] = field(default_factory=set)  # every lower-cased username, active or not: all are taken

    @classmethod
    def build(cls, session: Session) -> RegistryIndex:
        index = cls()
        for host in session.scalars(sa.select(Host)):
            index.add_host(host)
        for username, email, host_id, status in session.execute(
            sa.select(User.username, User.email, User.host_id, User.status)
        ):
            index.usernames.add(username.lower())
            if status == "active":
                index.add_address(email, host_id)
                index.by_username[username.lower()] = host_id
        return index

    def add_host(self, host: Host) -> None:
        folded = fold(host.name)
        self.names[host.host_id] = folded
        self.hosts[host.host_id] = HostFacts.of(host)
        self.add_address(host.contact_email, host.host_id)
        for word in set(folded.split()) - GENERIC_WORDS:
            if len(word) > 2 or word.isdigit():
                self.by_word[word].add(host.host_id)
        for short in _acronyms_for(host):
            self.by_acronym[short].add(host.host_id)

    def add_address(self, email: str, host_id: str) -> None:
        email = (email or "").strip().lower()
        if "@" not in email:
            return
        self.by_address[email].add(host_id)
        domain = email.rpartition("@")[2]
        if domain not in PUBLIC_DOMAINS:
            self.by_domain[domain].add(host_id)

    def _candidates(self, words: set[str], limit: int = 25) -> list[str]:
        """Hosts sharing the most telling words with the text; only these are fuzzy-compared.

        A word shared by many hosts ("reading", a town name) says little, so each shared word counts
        by how rare it is among host names, and only the best ``limit`` hosts go on.
        """
        weight: dict[str, float] = {}
        for word in sorted(words):  # a fixed order, so float sums and ties come out the same in every process
            hosts = self.by_word.get(word)
            if hosts:
                share = 1.0 / len(hosts)
                for host_id in hosts:
                    weight[host_id] = weight.get(host_id, 0.0) + share
        # A word such as "reading" is in hundreds of host names; of those only the best few are wanted.
        best = heapq.nsmallest(limit, weight.items(), key=lambda item: (-item[1], item[0]))
        return [host_id for host_id, _ in best]

    def hosts_for_address(self, address: str) -> set[str]:
        return set(self.by_address.get(address.lower(), ()))

    def hosts_for_domain(self, address: str) -> set[str]:
        domain = address.lower().rpartition("@")[2]
        if not domain or domain in PUBLIC_DOMAINS:
            return set()
        hosts = set(self.by_domain.get(domain, ()))
        # A sub-domain (math.montana.edu) belongs to the organisation of its parent domain.
        while not hosts and domain.count(".") > 1:
            domain = domain.split(".", 1)[1]
            hosts = set(self.by_domain.get(domain, ()))
        return hosts

    def hosts_named_in(self, text: str) -> list[tuple[str, float]]:
        """Hosts the text names, best first, each with a score from 0 to 100."""
        folded = fold(text)
        words = set(folded.split())
        scores: dict[str, float] = {}
        for short in self._acronyms_in(text, folded):
            for host_id in self.by_acronym.get(short, ()):
                scores[host_id] = max(scores.get(host_id, 0), 92 + min(len(short), 8) / 2)
        for host_id in self._candidates(words):
            score = max(fuzz.partial_ratio(self.names[host_id], folded), _name_coverage(self.names[host_id], words))
            if score >= HOST_NAME_THRESHOLD:
                # A longer name matched as well is the more specific host ("Montana State University Billings").
                score += min(len(self.names[host_id]), 60) / 20
                scores[host_id] = max(scores.get(host_id, 0), score)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))

    def hosts_of_usernames_in(self, text: str) -> set[str]:
        """Hosts whose users' usernames the text gives ("my username is PSullivan", "OPI\\DWagner")."""
        tokens = re.findall(r"(?<![\w@.])[A-Z][A-Za-z'-]{2,30}\d{0,2}\b", text)
        return {self.by_username[t.lower()] for t in tokens if t.lower() in self.by_username and any(c.isupper() for c in t[1:])}

    def _acronyms_in(self, text: str, folded: str) -> set[str]:
        found = {m.group(0).lower() for m in _CAPS.finditer(text) if sum(c.isupper() for c in m.group(0)) >= 2}
        for match in re.finditer(r"\b(region [ivx]+|district \d+) ([a-z]{2,6})\b", folded):
            found.add(f"{match.group(1)} {match.group(2)}")
        return {f for f in found if f in self.by_acronym}


def _name_coverage(name: str, words: set[str]) -> float:
    """How much of a host's name the text contains, its telling words counting most: "Butte School
    District" names "Butte School District No. 1" though the number is left off."""
    weights = {w: (0.3 if w.isdigit() or w == "no" else 1.0 if w in GENERIC_WORDS else 3.0) for w in name.split()}
    if not any(w not in GENERIC_WORDS and not w.isdigit() for w in weights):
        return 0.0
    found = sum(weight for w, weight in weights.items() if w in words)
    return 100.0 * found / sum(weights.values())


_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, tuple[object, ...], RegistryIndex]] = {}


def registry_version(session: Session) -> tuple[object, ...]:
    """Row counts and latest changes of hosts and users: any import or approval changes one of them."""
    row = session.execute(
        sa.select(
            sa.select(sa.func.count()).select_from(Host).scalar_subquery(),
            sa.select(sa.func.max(Host.updated_at)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(User).scalar_subquery(),
            sa.select(sa.func.max(User.updated_at)).scalar_subquery(),
        )
    ).one()
    return tuple(row)


def registry_index(session: Session) -> RegistryIndex:
    """The index for this database, rebuilt when the registry changed (checked at most once a second),
    including by another process such as ``pdubot import``."""
    key = str(session.get_bind().url)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached and now - cached[0] < CHECK_SECONDS:
        return cached[2]
    version = registry_version(session)
    if cached and cached[1] == version:
        index = cached[2]
    else:
        index = RegistryIndex.build(session)
        keep_out_of_full_collections()
    with _cache_lock:
        _cache[key] = (now, version, index)
    return index


def keep_out_of_full_collections() -> None:
    """Move every object alive now, the new index with it, out of the cyclic collector's way (``gc.freeze``).

    The index lives until the registry changes, and with the rest of a running process it is enough objects
    that each full collection walked them for 65 to 80 ms on the test machine: a pause that landed on
    whichever message was being read. Frozen objects are still freed when nothing refers to them; thawing
    first lets what an earlier index left in cycles be collected again.
    """
    gc.unfreeze()
    gc.freeze()


def forget_registry_index() -> None:
    """Drop cached indexes: called after imports and approvals change hosts or users."""
    with _cache_lock:
        _cache.clear()


@dataclass(frozen=True)
class HostMatch:
    host_id: str | None
    how: str  # "sender", "domain", "text", "event", or "" when unmatched
    sender_on_file: bool  # the sender is a user or the account contact of the matched host


def match_host(index: RegistryIndex, sender: str, text: str) -> HostMatch:
    """The host a message is about, trying the sender, the domain and then the text."""
    on_file = index.hosts_for_address(sender)
    if len(on_file) == 1:
        return HostMatch(next(iter(on_file)), "sender", True)
    named = index.hosts_named_in(text)
    if len(on_file) > 1:  # a person on file for several hosts: the text says which
        for host_id, _ in named:
            if host_id in on_file:
                return HostMatch(host_id, "sender", True)
    by_username = index.hosts_of_usernames_in(text)
    if len(by_username) == 1:
        return HostMatch(next(iter(by_username)), "username", False)
    by_domain = index.hosts_for_domain(sender)
    if named and named[0][0] in by_domain:
        return HostMatch(named[0][0], "domain", False)
    if len(by_domain) == 1:
        return HostMatch(next(iter(by_domain)), "domain", False)
    if named:
        return HostMatch(named[0][0], "text", False)
    return HostMatch(None, "", False)


class EventFacts(NamedTuple):
    """An event as reading sees it, loaded as a plain row: building ORM objects for a host's events cost
    more than the query that finds them, and reading changes nothing."""

    event_id: str
    host_id: str
    title: str
    instructor: str
    description: str
    categories: list[str]
    start_date: dt.date
    end_date: dt.date
    online: bool
    city: str
    zip: str
    state: str
    hours: Decimal
    certificates_issued: int | None
    status: EventStatus

    @property
    def location(self) -> str:
        return location(self.online, self.city, self.state, self.zip)


_EVENT_ID = re.compile(r"\b[A-Za-z]{0,4}-?\d{3,9}\b")
_EVENTS: sa.Table = Event.__table__  # type: ignore[assignment]
# Built once: building a statement and its cache key costs more than SQLite takes to answer it.
_EVENT_FACTS = sa.select(*(_EVENTS.c[name] for name in EventFacts._fields))
_EVENTS_AMONG = _EVENT_FACTS.where(_EVENTS.c.event_id.in_(sa.bindparam("ids", expanding=True)))
_EVENTS_OF_HOST = _EVENT_FACTS.where(_EVENTS.c.host_id == sa.bindparam("host_id"))


def _event_facts(session: Session, statement: sa.Select[tuple[object, ...]], **params: object) -> list[EventFacts]:
    # Read on the session's own connection, in its transaction, past the ORM's layers; so flush first, as
    # an ORM query would, or an event changed earlier in this transaction would be read as it was.
    if session.autoflush:
        session.flush()
    return [EventFacts(*row) for row in session.connection().execute(statement, params)]


def events_by_id(session: Session, text: str) -> list[EventFacts]:
    """Events whose id appears in the text (ids are looked up exactly, so a phone number never matches)."""
    tokens = list(dict.fromkeys(m.group(0) for m in _EVENT_ID.finditer(text)))[:40]
    if not tokens:
        return []
    found = _event_facts(session, _EVENTS_AMONG, ids=list(dict.fromkeys(tokens + [t.upper() for t in tokens])))
    order = {t.upper(): n for n, t in enumerate(tokens)}
    return sorted(found, key=lambda e: order.get(e.event_id.upper(), 99))


def host_events(session: Session, host_id: str) -> list[EventFacts]:
    return _event_facts(session, _EVENTS_OF_HOST, host_id=host_id)


@dataclass(frozen=True)
class EventMatch:
    event: EventFacts | None
    score: float
    how: str
    lead: float = 0.0  # how far ahead of the next best event it is


EVENT_THRESHOLD = 60.0
TITLE_STOP_WORDS = GENERIC_WORDS | frozenset("with from into your our part session workshop training day night".split())
EVENT_NOUNS = frozenset("workshop training session night day conference institute course webinar summit class".split())
_TITLE_PARTS = re.compile(r"[:–—]| - ")


@dataclass(frozen=True)
class Title:
    """What matching looks at in one event title, worked out once: a host's titles are compared with every
    message that host sends."""

    words: tuple[str, ...]  # the folded title's words, in order
    word_set: frozenset[str]
    parts: tuple[str, ...]  # the whole folded title, and each specific part of it (after a colon)
    telling: tuple[str, ...]  # the words that tell titles apart, each once
    pairs: tuple[tuple[str, str, str], ...]  # neighbouring words, and the two as written together
    last_part: str  # the part after the last colon or dash: what hosts call the event

    @classmethod
    @functools.lru_cache(maxsize=65536)
    def of(cls, title: str) -> Title:
        folded = fold(title)
        words = tuple(folded.split())
        specific = (fold(p) for p in _TITLE_PARTS.split(title)[1:] if len(p.split()) >= 2)
        return cls(
            words=words,
            word_set=frozenset(words),
            parts=tuple(part for part in (folded, *specific) if part),
            telling=tuple(dict.fromkeys(w for w in words if w not in TITLE_STOP_WORDS and len(w) > 2)),
            pairs=tuple((a, b, f"{a} {b}") for a, b in zip(words, words[1:])),
            last_part=fold(_TITLE_PARTS.split(title)[-1]),
        )


class Words:
    """A text's folded words, grouped so that near spellings of a title word are found without trying them all."""

    def __init__(self, folded: str) -> None:
        self.folded = folded
        self.padded = f" {folded} "
        self.all = set(folded.split())
        self._alike: dict[tuple[str, int], list[str]] = defaultdict(list)
        for word in self.all:
            self._alike[word[0], len(word)].append(word)
        self._near: dict[str, bool] = {}

    def has(self, word: str) -> bool:
        """The word, or its plural or a small typo of it: "teams" for "team", "stratagies" for "strategies"."""
        if word in self.all:
            return True
        near = self._near.get(word)
        if near is None:
            near = self._near[word] = len(word) > 4 and self._near_spelling(word)
        return near

    def _near_spelling(self, word: str) -> bool:
        # A typo rarely changes the first letter, and changes the length by two letters at most.
        candidates = (w for n in range(len(word) - 2, len(word) + 3) for w in self._alike.get((word[0], n), ()))
        return any(fuzz.ratio(w, word) >= 85 for w in candidates)


@functools.lru_cache(maxsize=16)
def words_of(folded: str) -> Words:
    """Cached: one reading matches events against the same request sentence several times."""
    return Words(folded)


def match_event(
    events: list[EventFacts],
    text: str,
    mentions: list[DateMention],
    sent_on: dt.date,
    prefer_ended: bool,
    focus: str = "",
    awaiting_count: bool = False,
) -> EventMatch:
    """The host's event the text is about: by title (fuzzy or partial), the dates and the place it mentions.

    ``focus`` is the sentence that makes the request: an event named there beats one named in passing.
    ``awaiting_count`` favours ended events with no count yet, the ones a count is usually for.
    """
    words = words_of(fold(text))
    in_focus = words_of(fold(focus)) if focus else None
    rarity = _word_rarity(events)
    ranked: list[tuple[float, str, EventFacts]] = []
    for event in events:
        title = Title.of(event.title)
        title_score = _title_score(title, words, rarity, len(events))
        date_score = _date_score(event, mentions)
        score = title_score + date_score + _kind_of_event_bonus(title, words)
        if title_score:
            score += _first_mention_bonus(title, words.folded)
        if in_focus and in_focus.folded and title_score and _title_score(title, in_focus, rarity, len(events)) >= 70:
            score += 15
        if event.city and fold(event.city) in words.all:
            score += 8
        if prefer_ended and event.end_date <= sent_on:
            score += 4
        if awaiting_count and event.end_date <= sent_on and event.certificates_issued is None:
            score += 10
        if event.status == EventStatus.CANCELLED:
            score -= 10
        ranked.append((score, "title" if title_score >= date_score else "date", event))
    ranked.sort(key=lambda item: -item[0])
    if not ranked:
        return EventMatch(None, 0.0, "")
    best_score, how, best = ranked[0]
    lead = best_score - (ranked[1][0] if len(ranked) > 1 else 0.0)
    if how == "date" and lead >= 20:
        best_score += 25  # the only event on the date the host gives ("our Oct 14 workshop")
    if best_score < EVENT_THRESHOLD:
        return EventMatch(None, best_score, "", lead)
    return EventMatch(best, best_score, how, lead)


def _word_rarity(events: list[EventFacts]) -> dict[str, float]:
    """How telling each title word is among this host's events: a word in every title tells nothing."""
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        for word in Title.of(event.title).word_set:
            counts[word] += 1
    total = max(len(events), 1)
    return {word: 1.0 + total / n for word, n in counts.items()}


def _title_score(title: Title, text: Words, rarity: dict[str, float], total: int = 1) -> float:
    """Up to 100: the whole title, its most specific part (after a colon), or its telling words."""
    partial = max((fuzz.partial_ratio(part, text.folded) for part in title.parts), default=0)
    partial = partial if partial >= 80 else 0.0
    if not title.telling:
        return partial
    weight = sum(rarity.get(w, 1.0) for w in title.telling)
    found = sum(rarity.get(w, 1.0) for w in title.telling if text.has(w))
    overlap = found / weight
    return max(partial, 95 * overlap if overlap >= 0.45 else 0.0, _phrase_score(title, text, rarity))


def _phrase_score(title: Title, text: Words, rarity: dict[str, float]) -> float:
    """Two telling title words written together ("the co-teaching one") name the event well enough.

    Words found in most of the host's titles (often its own name, "Small Schools ...") tell nothing.
    """
    # rarity is 1 + titles / titles-with-the-word, so above 3 the word is in fewer than half the titles
    def telling(word: str) -> bool:
        return rarity.get(word, 1.0) > 3.0 and word not in TITLE_STOP_WORDS

    found = any((telling(a) or telling(b)) and f" {pair} " in text.padded for a, b, pair in title.pairs)
    return 72.0 if found else 0.0


def _date_score(event: EventFacts, mentions: list[DateMention]) -> float:
    """A date the event starts or ends on says much; a date inside a months-long course says little."""
    best = 0.0
    long_running = (event.end_date - event.start_date).days > 14
    for mention in mentions:
        if mention.start in (event.start_date, event.end_date) or (mention.start, mention.end) == (event.start_date, event.end_date):
            best = max(best, 40.0)
        elif mention.start <= event.end_date and mention.end >= event.start_date:
            best = max(best, 10.0 if long_running else 40.0)
        elif abs((mention.start - event.start_date).days) <= 1:
            best = max(best, 15.0)
    return best


def _kind_of_event_bonus(title: Title, text: Words) -> float:
    """"Our Oct 14 workshop": the kind of event the host names, when its title says the same."""
    return 5.0 if EVENT_NOUNS & text.all & title.word_set else 0.0


def _first_mention_bonus(title: Title, folded_text: str) -> float:
    """When several titles are named, the one named first is usually the one the request is about."""
    part = title.last_part
    alignment = fuzz.partial_ratio_alignment(part, folded_text) if part else None
    if alignment is None or alignment.score < 90 or not folded_text:
        return 0.0
    return 5.0 * (1 - alignment.dest_start / len(folded_text))
