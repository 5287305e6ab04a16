"""The kinds of request, one module each. Adding a kind means adding a module that defines ``SPEC``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from storage.enums import TicketKind
from workflows.kinds.base import CueIndex, KindSpec

_NOT_KINDS = {"base", "people"}


@cache
def all_specs() -> tuple[KindSpec, ...]:
    """Every kind module's SPEC, found by listing this package, so a new module is picked up by itself."""
    specs = []
    for module in pkgutil.iter_modules(__path__):
        if module.name in _NOT_KINDS:
            continue
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        spec = getattr(loaded, "SPEC", None)
        if not isinstance(spec, KindSpec):
            raise TypeError(f"{loaded.__name__} defines no SPEC: every module in workflows.kinds is a kind")
        specs.append(spec)
    return tuple(specs)


def spec_for(kind: TicketKind) -> KindSpec:
    for spec in all_specs():
        if spec.kind == kind:
            return spec
    raise KeyError(f"no kind module for {kind.value}")


@cache
def cue_index() -> CueIndex:
    """Every kind's cues, for trying them all on one text at once."""
    return CueIndex(all_specs())
