"""Load a corpus's registry (tests/corpus/registry) into a test database, as `pdubot import` would."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from workflows.matching import forget_registry_index
from workflows.registry_import import EVENTS, HOSTS, USERS, decode_export, import_records, text_lines

CORPORA = Path(__file__).parent
REGISTRY = CORPORA / "corpus" / "registry"


def registry_of(corpus: Path) -> Path:
    """The registry a corpus's emails refer to: its own ``registry/`` when it has one, else the shared one."""
    own = corpus / "registry"
    return own if own.is_dir() else REGISTRY


def load_registry(sessions: sessionmaker[Session], folder: Path = REGISTRY) -> None:
    for kind, name in ((HOSTS, "hosts.csv"), (USERS, "users.csv"), (EVENTS, "events.csv")):
        text = decode_export((folder / name).read_bytes())
        result = import_records(sessions, kind, text_lines(text), f"import:{name}")
        assert not result.rejected, result.rejected
    forget_registry_index()
