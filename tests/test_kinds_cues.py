"""The words each cue cannot match without, which let the reader skip searches that cannot succeed."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.corpora import CORPORA
from workflows import dates
from workflows.kinds import all_specs, cue_index
from workflows.kinds.base import Cue, cue
from workflows.literals import WordSet, lowered, may_match, required_words
from workflows.parsing import parse_message


def clauses(regex: str) -> list[set[str]]:
    return [set(clause) for clause in required_words(re.compile(regex, re.IGNORECASE))]


def test_it_finds_the_words_a_pattern_cannot_match_without():
    assert clauses(r"\bcancel(?:l)?(?:ed|ing|ation)?\b") == [{"cancel"}]
    assert clauses(r"\b(?:did (?:happen|take place)|we met)\b") == [
        {"did ha", "did ta", "we met"}, {"happen", "take p", "we met"}]
    assert clauses(r"\bsecure portal\b|\breset\b") == [{"secure", "reset"}]
    assert clauses(r"ab?c") == [{"abc", "ac"}]


def test_it_asks_for_every_part_a_pattern_needs():
    # "remove ... from" needs a word of each group; the more telling group is tried first.
    assert clauses(r"\b(?:remove|take)\b.{0,80}\b(?:from|off)\b") == [{"remove", "take"}, {"from", "off"}]
    # (a and b) or c: a match meets (a or c) and (b or c).
    assert clauses(r"\bnew\b.{0,9}\bphone\b|\bmoved\b") == [{"phone", "moved"}, {"new", "moved"}]
    item = cue(r"\b(?:remove|take)\b.{0,80}\b(?:from|off)\b", 1.0)
    assert not may_match(item.needs, lowered("please remove Jo"))
    assert may_match(item.needs, lowered("please remove Jo from the list"))


def test_it_asks_for_no_words_when_a_pattern_can_match_without_any():
    assert clauses(r"(?m)^\s*\d{1,4}\s*$") == []
    assert clauses(r"\b(?:add )?me\b|\d+") == []
    assert clauses(r"(?:certificates?)?\s*count") == [{"count"}]


def test_it_compares_text_as_ignorecase_does():
    # With IGNORECASE, "ſ" (long s) matches "s" and "İ"/"ı" match "i"; the word test must not miss them.
    item = cue(r"\bsign me up\b|\bdistribution list\b", 3.0)
    for text in ("Please ſign me up", "DİSTRİBUTİON LIST please", "the distrıbution list"):
        assert item.pattern.search(text)
        assert may_match(item.needs, lowered(text))
        assert item.search(text)


@functools.cache
def corpus_texts() -> list[str]:
    texts: set[str] = set()
    for path in sorted(CORPORA.glob("corpus*/emails/*.eml")):
        parsed = parse_message(path.read_bytes())
        texts.update((parsed.new_text, parsed.subject))
    return sorted(texts)


def plain_search(item: Cue, text: str) -> bool:
    return bool(item.pattern.search(text)) and (item.also is None or bool(item.also.search(text)))


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.kind.value)
def test_it_never_skips_a_cue_that_matches(spec):
    texts = corpus_texts()
    for item in spec.cues:
        differing = [t[:80] for t in texts if item.search(t) != plain_search(item, t)]
        assert not differing, (item.pattern.pattern, differing[:3])


def test_the_cue_index_finds_exactly_the_cues_that_match():
    index = cue_index()
    for text in corpus_texts():
        assert index.found(text) == tuple(c for c in index.cues if plain_search(c, text)), text[:80]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_cue_index_finds_cues_in_text_built_to_match_them(data):
    index = cue_index()
    chosen = data.draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3))
    pieces = [data.draw(st.from_regex(p)) for p in chosen] + data.draw(st.lists(st.text(max_size=30), max_size=3))
    text = " ".join(data.draw(st.permutations(pieces)))
    assert index.found(text) == tuple(c for c in index.cues if plain_search(c, text))


def test_the_word_set_finds_every_word_the_text_holds():
    words = WordSet({"ab", "cancel", "can", "did ha", "xyz"})
    assert words.present_in("we did have to cancel it") == {"can", "cancel", "did ha"}
    assert words.present_in("ab") == {"ab"}
    assert words.present_in("") == frozenset()


PATTERNS = [p for spec in all_specs() for item in spec.cues for p in (item.pattern, item.also) if p is not None]
PATTERNS += dates._PATTERNS  # the date finder skips the patterns whose words a text lacks, as the cues do
PATTERNS += [re.compile(r, re.IGNORECASE) for r in (r"\bblood[- ]?borne\b", r"(?:a|b)(?:c|d){2,3}x?", r"\bsept?(?:ember)?\b[’']s")]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.pattern[:40])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_it_finds_its_words_in_any_text_the_pattern_matches(pattern, data):
    text = data.draw(st.from_regex(pattern))
    assert may_match(required_words(pattern), lowered(text)), (sorted(required_words(pattern)), text)
