"""The words a regular expression cannot match without, so that a search which cannot succeed is skipped.

Reading one message tries every kind's cues on the same few texts, and most cues find nothing. The regex
engine tries a pattern such as ``\\b(?:change|fix|update)\\b`` at every position of the text, while asking
whether "change", "fix" or "update" occurs at all is a substring test in C, many times cheaper. The words
are derived from each pattern's own syntax tree, never written by hand, so a test and its pattern cannot
drift apart: a text without any of the words is a text the pattern cannot match.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from re import _constants as sre  # the parser's opcodes; the tree below is the one re.compile uses
from re import _parser as sre_parse

MAX_STRINGS = 64  # the most alternatives followed through a pattern before a run of literals is cut
WORD_CHARS = 6  # fewer, shorter strings test faster; six characters still rule out most texts
# With IGNORECASE, ASCII "i" and "s" also match these three, which str.lower() does not map to them.
_ALSO_MATCHED = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)  # \b, ^, $ and lookarounds consume no text
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


@dataclass(frozen=True)
class _Shape:
    """What is known about the text one piece of a pattern matches."""

    exact: frozenset[str] | None  # every string it can match, lower-cased, when they are few
    needs: frozenset[str] | None  # every match contains one of these; None when nothing is known


_UNKNOWN = _Shape(None, None)  # a character class, ".", "\w": some text, but which is not known
_EMPTY = _Shape(frozenset({""}), None)


def lowered(text: str) -> str:
    """``text`` as the word tests compare it: lower-case, with the letters IGNORECASE treats as i and s."""
    return _lowered(text)


@functools.lru_cache(maxsize=1024)
def _lowered(text: str) -> str:
    # Cached: one message's body and subject are tested by every cue of every kind.
    return (text if text.isascii() else text.translate(_ALSO_MATCHED)).lower()


def may_match(words: frozenset[str], lowered_text: str) -> bool:
    """False only when the text holds none of the words a pattern needs (see ``required_words``)."""
    return not words or any(word in lowered_text for word in words)


def required_words(pattern: re.Pattern[str]) -> frozenset[str]:
    """Lower-case strings of which every match of ``pattern`` contains at least one; empty when none is known.

    Each string is cut to its first ``WORD_CHARS`` characters, and none contains another: any piece of a
    needed string is needed too, and "update it in my", "update it on our" ... test faster as "update".
    """
    needs = _requirement(_sequence(sre_parse.parse(pattern.pattern, pattern.flags)))
    cut = {word[:WORD_CHARS] for word in needs or ()}
    return frozenset(w for w in cut if not any(o != w and o in w for o in cut))


def _sequence(nodes: list[tuple[object, object]] | sre_parse.SubPattern) -> _Shape:
    """Pieces one after another: a run of known pieces joins into longer strings ("can" "cel" → "cancel")."""
    candidates: list[frozenset[str]] = []
    run: frozenset[str] = frozenset({""})
    whole = True
    for op, av in nodes:
        shape = _node(op, av)
        if shape.needs:
            candidates.append(shape.needs)
        if shape.exact is None:
            candidates.append(run)
            run, whole = frozenset({""}), False
            continue
        joined = frozenset(a + b for a in run for b in shape.exact)
        if len(joined) > MAX_STRINGS:
            candidates.append(run)
            run, whole = shape.exact, False
        else:
            run = joined
    candidates.append(run)
    return _Shape(run if whole else None, _best(candidates))


def _node(op: object, av: object) -> _Shape:
    if op is sre.LITERAL:
        char = chr(av)  # type: ignore[arg-type]
        return _Shape(frozenset({char.lower()}), None) if char.isascii() else _UNKNOWN
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
    return _Shape(frozenset(chars), None)


def _branch(alternatives: list[sre_parse.SubPattern]) -> _Shape:
    """a|b|c: the match is one of them, so it contains what one of them needs."""
    shapes = [_sequence(alternative) for alternative in alternatives]
    exact: frozenset[str] | None = None
    if all(s.exact is not None for s in shapes):
        exact = frozenset().union(*(s.exact for s in shapes))  # type: ignore[misc]
        exact = exact if len(exact) <= MAX_STRINGS else None
    needs = [_requirement(s) for s in shapes]
    return _Shape(exact, frozenset().union(*needs) if all(needs) else None)  # type: ignore[arg-type]


def _repeat(least: int, most: int, item: sre_parse.SubPattern) -> _Shape:
    inner = _sequence(item)
    if most == 1 and inner.exact is not None:  # x? is "" or x
        return _Shape(inner.exact | ({""} if least == 0 else set()), None)
    if least == 0:
        return _UNKNOWN
    return _Shape(None, _requirement(inner))  # x+ and x{2,5} contain x at least once


def _requirement(shape: _Shape) -> frozenset[str] | None:
    return _best([c for c in (shape.needs, shape.exact) if c])


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    """The most telling requirement: its shortest string is longest (an "a" is in every text)."""
    usable = [c for c in candidates if c and "" not in c]
    return max(usable, key=lambda c: (min(map(len, c)), -len(c)), default=None)
