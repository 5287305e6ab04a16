"""The words each cue cannot match without, which let the reader skip searches that cannot succeed."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.corpora import CORPORA
from workflows.kinds import all_specs
from workflows.kinds.base import Cue, cue
from workflows.literals import lowered, may_match, required_words
from workflows.parsing import parse_message


def words(regex: str) -> set[str]:
    return set(required_words(re.compile(regex, re.IGNORECASE)))


def test_it_finds_the_words_a_pattern_cannot_match_without():
    assert words(r"\bcancel(?:l)?(?:ed|ing|ation)?\b") == {"cancel"}
    assert words(r"\b(?:did (?:happen|take place)|we met)\b") == {"did ha", "did ta", "we met"}
    assert words(r"\bsecure portal\b|\breset\b") == {"secure", "reset"}
    assert words(r"ab?c") == {"abc", "ac"}
    assert words(r"\b(?:remove|take)\b.{0,80}\b(?:from|off)\b") == {"remove", "take"}


def test_it_asks_for_no_words_when_a_pattern_can_match_without_any():
    assert words(r"(?m)^\s*\d{1,4}\s*$") == set()
    assert words(r"\b(?:add )?me\b|\d+") == set()
    assert words(r"(?:certificates?)?\s*count") == {"count"}


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


PATTERNS = [p for spec in all_specs() for item in spec.cues for p in (item.pattern, item.also) if p is not None]
PATTERNS += [re.compile(r, re.IGNORECASE) for r in (r"\bblood[- ]?borne\b", r"(?:a|b)(?:c|d){2,3}x?", r"\bsept?(?:ember)?\b[’']s")]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.pattern[:40])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_it_finds_its_words_in_any_text_the_pattern_matches(pattern, data):
    text = data.draw(st.from_regex(pattern))
    assert may_match(required_words(pattern), lowered(text)), (sorted(required_words(pattern)), text)
