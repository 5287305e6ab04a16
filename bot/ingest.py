"""File intake: .eml files, folders of them and Maildirs, for backfill and tests."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredMessage:
    """One message on disk: a plain file, or a key inside a Maildir."""

    path: Path
    maildir_key: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.path}#{self.maildir_key}" if self.maildir_key else str(self.path)

    def read(self) -> bytes:
        if self.maildir_key is None:
            return self.path.read_bytes()
        box = mailbox.Maildir(self.path, factory=None, create=False)
        with box.get_file(self.maildir_key) as handle:
            return handle.read()


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def find_messages(paths: list[Path]) -> list[StoredMessage]:
    """Every message under ``paths``, in a stable order; listing reads no message bodies."""
    found: list[StoredMessage] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(path)
        if path.is_dir() and is_maildir(path):
            found.extend(_maildir_messages(path))
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() == ".eml":
                    found.append(StoredMessage(child))
                elif child.is_dir() and is_maildir(child):
                    found.extend(_maildir_messages(child))
        else:
            found.append(StoredMessage(path))
    return found


def _maildir_messages(path: Path) -> list[StoredMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    return [StoredMessage(path, key) for key in sorted(box.keys())]
