"""Score the reader against a corpus of emails with expected readings (kind, host, event and fields).

A corpus is a folder with ``emails/*.eml`` and ``expected.json``: a list of
{"file", "kind", "host_id", "event_id", "fields"}. Fields are compared key by key after flattening
(``person.email``, ``changes.hours``), with values normalised so 12 == 12.0 and text ignores case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from workflows.inbox import inspect
from workflows.matching import fold
from workflows.policy import MailboxPolicy


def flatten(fields: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def same_value(expected: Any, got: Any) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and isinstance(got, (int, float)):
        return abs(float(expected) - float(got)) < 1e-9
    if isinstance(expected, list) and isinstance(got, list):
        return sorted(fold(str(v)) for v in expected) == sorted(fold(str(v)) for v in got)
    if isinstance(expected, str) and isinstance(got, str):
        return fold(expected) == fold(got)
    return expected == got


@dataclass
class Score:
    emails: int = 0
    kinds_right: int = 0
    matches_right: int = 0
    field_keys: int = 0
    field_keys_right: int = 0
    misses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind_accuracy(self) -> float:
        return self.kinds_right / self.emails if self.emails else 0.0

    @property
    def match_accuracy(self) -> float:
        return self.matches_right / self.emails if self.emails else 0.0

    @property
    def field_accuracy(self) -> float:
        return self.field_keys_right / self.field_keys if self.field_keys else 1.0

    def as_json(self) -> dict[str, Any]:
        return {
            "emails": self.emails,
            "kind_accuracy": round(self.kind_accuracy, 4),
            "host_event_accuracy": round(self.match_accuracy, 4),
            "field_accuracy": round(self.field_accuracy, 4),
            "misses": self.misses,
        }


def score_one(score: Score, expected: dict[str, Any], got: dict[str, Any]) -> None:
    score.emails += 1
    problems: dict[str, Any] = {}
    if got["kind"] == expected["kind"]:
        score.kinds_right += 1
    else:
        problems["kind"] = [expected["kind"], got["kind"]]
    if got.get("host_id") == expected.get("host_id") and got.get("event_id") == expected.get("event_id"):
        score.matches_right += 1
    else:
        problems["match"] = [[expected.get("host_id"), expected.get("event_id")], [got.get("host_id"), got.get("event_id")]]
    want, have = flatten(expected.get("fields") or {}), flatten(got.get("fields") or {})
    for key, value in want.items():
        score.field_keys += 1
        if key in have and same_value(value, have[key]):
            score.field_keys_right += 1
        else:
            problems.setdefault("fields", {})[key] = [value, have.get(key)]
    if problems:
        score.misses.append({"file": expected["file"], **problems})


def score_corpus(session: Session, corpus: Path, policy: MailboxPolicy) -> Score:
    score = Score()
    for expected in json.loads((corpus / "expected.json").read_text(encoding="utf-8")):
        raw = (corpus / "emails" / expected["file"]).read_bytes()
        score_one(score, expected, inspect(session, raw, policy))
    return score
