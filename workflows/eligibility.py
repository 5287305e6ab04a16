"""OPI's own eligibility knowledge, as data, for hints to staff. The service never answers these itself."""

from __future__ import annotations

import re

# ARM 10.55.714 (with 10.57.215 and 10.57.216): what a qualifying activity is.
ARM_CRITERIA = (
    "planned and structured",
    "aligned to the P-12 public school curriculum",
    "clear learning objectives",
    "focused on educator growth",
    "includes active learning",
    "ongoing or sustained where that fits",
    "evaluated for impact",
)
# Each entry: (label shown to staff, what it means, pattern that finds it in a question).
HINT_LIST: tuple[tuple[str, str, str], ...] = (
    ("CPR / First Aid", "needs careful judgement", r"\bcpr\b|first aid"),
    ("PLCs", "needs careful judgement", r"\bplcs?\b|professional learning communit"),
    ("mentor teacher activities", "needs careful judgement", r"\bmentor"),
    ("mandatory reporting training", "needs careful judgement", r"mandatory report"),
    ("parent-teacher conferences", "does not qualify", r"parent[- ]teacher conference"),
    ("grading time", "does not qualify", r"\bgrading\b"),
    ("classroom setup or takedown", "does not qualify", r"classroom (?:set ?up|take ?down)"),
    ("staff meetings", "does not qualify", r"staff meetings?"),
    ("blood-borne pathogens training", "does not qualify", r"blood[- ]?borne"),
    ("accreditation review committees", "does not qualify", r"accreditation"),
    ("Albion Institute (online)", "online vendor that does not meet Montana's standards", r"\balbion\b"),
    ("IRIS Center (online)", "online vendor that does not meet Montana's standards", r"\biris\b"),
    ("NAEYC (online)", "online vendor that does not meet Montana's standards", r"\bnaeyc\b"),
    ("Bureau of Education Research (online)", "online vendor that does not meet Montana's standards", r"bureau of education research|\bber\b"),
    ("Western Washington University - GG (online)", "online vendor that does not meet Montana's standards", r"western washington"),
    ("ISS EDU Learn (online)", "online vendor that does not meet Montana's standards", r"\biss edu"),
    ("ed2go", "judged course by course", r"\bed2go\b"),
    ("PESI", "judged course by course", r"\bpesi\b"),
    ("online course time verification", "online courses must verify participants' time (no fast-forwarding)", r"\bonline\b|\bself[- ]paced\b|\bvideos?\b"),
)


# Compiled once, when the module loads, rather than by the first question that needs them.
HINTS = tuple((label, meaning, re.compile(pattern, re.IGNORECASE)) for label, meaning, pattern in HINT_LIST)


def hints_for(text: str) -> list[str]:
    """The OPI list entries a question touches, as "label: what it means"."""
    return [f"{label}: {meaning}" for label, meaning, pattern in HINTS if pattern.search(text)]
