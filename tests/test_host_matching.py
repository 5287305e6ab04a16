"""Host matching gives the same answer in every process: ties are broken by host ID, not by hash order."""

from __future__ import annotations

import gc
import random
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from storage.registry import Host
from workflows.matching import _WORD, RegistryIndex, _fold_short, fold, forget_registry_index, registry_index


def test_it_breaks_ties_between_equally_named_hosts_by_host_id_whatever_the_insertion_order():
    ids = [f"H{n:04d}" for n in range(40)]
    random.Random(7).shuffle(ids)
    index = RegistryIndex()
    for host_id in ids:
        index.add_host(Host(host_id=host_id, name="Lincoln County Schools", contact_email=""))

    named = index.hosts_named_in("We are Lincoln County Schools and need help.")

    # 40 hosts with one name score alike; only the 25 best candidates are compared, and which 25 (and in
    # what order) must not depend on how Python happened to hash the IDs in this process.
    assert [host_id for host_id, _ in named] == sorted(ids)[:25]


def test_it_keeps_the_registry_index_out_of_the_collectors_full_collections(sessions):
    # A full collection walked the index and the rest of the process for tens of milliseconds, a pause that
    # landed on whichever message was being read; frozen objects are not walked.
    gc.unfreeze()
    forget_registry_index()
    with sessions() as session:
        index = registry_index(session)
    walked = {id(o) for o in gc.get_objects()}  # the permanent generation is not among them
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(index) and id(index) not in walked


def folded_the_long_way(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join(_WORD.findall("".join(c for c in decomposed if not unicodedata.combining(c)).lower()))


@given(st.text())
def test_folding_any_text_gives_what_decomposing_every_character_gives(text: str):
    assert fold(text) == folded_the_long_way(text)
    assert fold(text * 50) == folded_the_long_way(text * 50)


def test_it_keeps_folded_names_but_not_folded_messages():
    _fold_short.cache_clear()
    fold("Great Falls Public Schools")
    fold("A long message from a host. " * 40)
    assert _fold_short.cache_info().currsize == 1
