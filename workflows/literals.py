"""The words a regular expression cannot match without, so that a search which cannot succeed is skipped.

Reading one message tries every kind's cues on the same few texts, and most cues find nothing. The regex
engine tries a pattern such as ``\\b(?:change|fix|update)\\b`` at every position of the text, while asking
whether "change", "fix" or "update" occurs at all is a substring test in C, many times cheaper. The words
are derived from each pattern's own syntax tree, never written by hand, so a test and its pattern cannot
drift apart: a text without any of the words is a text the pattern cannot match.

A pattern usually needs several things at once: ``\\b(?:change|fix)\\b.{0,30}\\b(?:title|hours)\\b`` needs
one of "change" and "fix" *and* one of "title" and "hours". Each such requirement is a clause, and a text
must meet every clause; a text that holds "please change" but neither "title" nor "hours" is not searched.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass
from re import _constants as sre  # the parser's opcodes; the tree below is the one re.compile uses
from re import _parser as sre_parse

MAX_STRINGS = 64  # the most alternatives followed through a pattern before a run of literals is cut
WORD_CHARS = 6  # fewer, shorter strings test faster; six characters still rule out most texts
MAX_CLAUSES = 4  # testing more clauses than this costs more than the searches they would save
MAX_COMBINATIONS = 16  # clauses crossed through an alternation: (a and b) or c is (a or c) and (b or c)
# With IGNORECASE, ASCII "i" and "s" also match these three, which str.lower() does not map to them.
_ALSO_MATCHED = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)  # \b, ^, $ and lookarounds consume no text
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)

Clause = frozenset[str]  # every match contains at least one of these strings
Needs = tuple[Clause, ...]  # every match meets every clause; empty when nothing is known


@dataclass(frozen=True)
class _Shape:
    """What is known about the text one piece of a pattern matches."""

    exact: frozenset[str] | None  # every string it can match, lower-cased, when they are few
    clauses: Needs = ()  # what every match contains besides


_UNKNOWN = _Shape(None)  # a character class, ".", "\w": some text, but which is not known
_EMPTY = _Shape(frozenset({""}))


def lowered(text: str) -> str:
    """``text`` as the word tests compare it: lower-case, with the letters IGNORECASE treats as i and s."""
    return _lowered(text)


@functools.lru_cache(maxsize=1024)
def _lowered(text: str) -> str:
    # Cached: one message's body and subject are tested by every cue of every kind.
    return (text if text.isascii() else text.translate(_ALSO_MATCHED)).lower()


def may_match(needs: Needs, lowered_text: str) -> bool:
    """False only when the text fails a clause of what a pattern needs (see ``required_words``)."""
    for clause in needs:
        for word in clause:
            if word in lowered_text:
                break
        else:
            return False
    return True


def required_words(pattern: re.Pattern[str]) -> Needs:
    """The clauses every match of ``pattern`` meets, most telling first; empty when none is known.

    Each string is cut to its first ``WORD_CHARS`` characters, and none contains another of its clause: any
    piece of a needed string is needed too, and "update it in my", "update it on our" ... test faster as
    "update". Clauses whose strings are single characters are dropped: nearly every text meets them.
    """
    shape = _sequence(sre_parse.parse(pattern.pattern, pattern.flags))
    found: list[Clause] = []
    for clause in sorted(_usable(_all_clauses(shape)), key=_telling, reverse=True):
        cut = {word[:WORD_CHARS] for word in clause}
        kept = frozenset(w for w in cut if not any(o != w and o in w for o in cut))
        if min(map(len, kept)) > 1 and kept not in found:
            found.append(kept)
    return tuple(found[:MAX_CLAUSES])


def _all_clauses(shape: _Shape) -> list[Clause]:
    return [*shape.clauses, *([shape.exact] if shape.exact else [])]


def _usable(clauses: list[Clause]) -> list[Clause]:
    """Clauses that rule something out: one that admits the empty string is met by every text."""
    return [c for c in clauses if c and "" not in c]


def _telling(clause: Clause) -> tuple[int, int]:
    """A clause whose shortest string is longest rules out most texts (an "a" is in every text)."""
    return min(map(len, clause)), -len(clause)


def _sequence(nodes: list[tuple[object, object]] | sre_parse.SubPattern) -> _Shape:
    """Pieces one after another: a run of known pieces joins into longer strings ("can" "cel" → "cancel")."""
    clauses: list[Clause] = []
    run: frozenset[str] = frozenset({""})
    whole = True
    for op, av in nodes:
        shape = _node(op, av)
        clauses += shape.clauses
        if shape.exact is None:
            clauses.append(run)
            run, whole = frozenset({""}), False
            continue
        joined = frozenset(a + b for a in run for b in shape.exact)
        if len(joined) > MAX_STRINGS:
            clauses.append(run)
            run, whole = shape.exact, False
        else:
            run = joined
    if whole:
        return _Shape(run, tuple(_usable(clauses)))
    return _Shape(None, tuple(_usable(clauses + [run])))


def _node(op: object, av: object) -> _Shape:
    if op is sre.LITERAL:
        char = chr(av)  # type: ignore[arg-type]
        return _Shape(frozenset({char.lower()})) if char.isascii() else _UNKNOWN
    if op is sre.IN:
        return _character_set(av)  # type: ignore[arg-type]
    if op in _ZERO_WIDTH:
        return _EMPTY
    if op is sre.SUBPATTERN:
        return _sequence(av[-1])  # type: ignore[index]  # (group, add_flags, del_flags, pattern)
    if op is sre.ATOMIC_GROUP:
        return _sequence(av)  # type: ignore[arg-type]
    if op is sre.BRANCH:
        return _branch(av[1])  # type: ignore[index]
    if op in _REPEATS:
        return _repeat(*av)  # type: ignore[misc]
    return _UNKNOWN  # ".", a negated literal, a back-reference: some text, but which is not known


def _character_set(items: list[tuple[object, object]]) -> _Shape:
    """[- ] or [’']: a few ASCII characters are listed; ranges, classes and negations are not."""
    chars = set()
    for op, av in items:
        if op is not sre.LITERAL or not chr(av).isascii():  # type: ignore[arg-type]
            return _UNKNOWN
        chars.add(chr(av).lower())  # type: ignore[arg-type]
    return _Shape(frozenset(chars))


def _branch(alternatives: list[sre_parse.SubPattern]) -> _Shape:
    """a|b|c: the match is one of them, so it meets, for each way of picking one clause of every
    alternative, the clause made of all the picked strings."""
    shapes = [_sequence(alternative) for alternative in alternatives]
    exact: frozenset[str] | None = None
    if all(s.exact is not None for s in shapes):
        exact = frozenset().union(*(s.exact for s in shapes))  # type: ignore[misc]
        exact = exact if len(exact) <= MAX_STRINGS else None
    options = [sorted(_usable(_all_clauses(s)), key=_telling, reverse=True) for s in shapes]
    if not all(options):
        return _Shape(exact)  # one alternative needs nothing known, so neither does the whole
    while math.prod(len(o) for o in options) > MAX_COMBINATIONS:
        longest = max(options, key=len)
        longest.pop()  # the least telling clause of the alternative with the most
    crossed = (frozenset().union(*picked) for picked in itertools.product(*options))
    return _Shape(exact, tuple(c for c in crossed if len(c) <= MAX_STRINGS))


def _repeat(least: int, most: int, item: sre_parse.SubPattern) -> _Shape:
    inner = _sequence(item)
    if most == 1 and inner.exact is not None:  # x? is "" or x
        return _Shape(inner.exact | ({""} if least == 0 else set()))
    if least == 0:
        return _UNKNOWN
    return _Shape(None, tuple(_usable(_all_clauses(inner))))  # x+ and x{2,5} contain x at least once


class WordSet:
    """Many needed strings, tested against one text together: which of them does the text hold?

    Testing each of several hundred strings with ``in`` scans the text once per string. Instead the text's
    three-character pieces are collected once, and only strings that begin with one of them are tested.
    """

    GRAM = 3

    def __init__(self, words: set[str]) -> None:
        self.short = tuple(sorted(w for w in words if len(w) < self.GRAM))
        by_gram: dict[str, list[str]] = {}
        for word in sorted(w for w in words if len(w) >= self.GRAM):
            by_gram.setdefault(word[: self.GRAM], []).append(word)
        self.by_gram = {gram: tuple(found) for gram, found in by_gram.items()}

    def present_in(self, lowered_text: str) -> frozenset[str]:
        """The strings ``lowered_text`` (see ``lowered``) contains."""
        grams = {lowered_text[i : i + self.GRAM] for i in range(len(lowered_text) - self.GRAM + 1)}
        found = [w for w in self.short if w in lowered_text]
        for gram in grams.intersection(self.by_gram):
            found += (w for w in self.by_gram[gram] if len(w) == self.GRAM or w in lowered_text)
        return frozenset(found)


def meets(needs: Needs, present: frozenset[str]) -> bool:
    """``may_match`` for a text whose needed strings are already known (``WordSet.present_in``)."""
    return all(not clause.isdisjoint(present) for clause in needs)
