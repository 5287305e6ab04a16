"""The service's secret key, which signs unsubscribe links: PDUBOT_SECRET_KEY, or one generated and kept under var/.

A generated key is written once and read back on every start, so links in mail already sent keep
working after a restart. The key is never logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bot.settings import Settings

KEY_FILE = "secret_key"


def load_secret_key(settings: Settings) -> bytes:
    """The configured key, else the one stored in ``var/secret_key``, created on first use."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode("utf-8")
    return stored_key(settings.var_dir / KEY_FILE)


def stored_key(path: Path) -> bytes:
    """Read the key file, creating it (owner-only) when missing; two processes starting together agree."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        # A hard link appears complete or not at all, and fails when the file exists: when two processes
        # race, one key wins and both read it.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _read(path)

def _read(path: Path) -> bytes:
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise RuntimeError(f"{path} is empty; delete it to generate a new key, or set PDUBOT_SECRET_KEY")
    return key.encode("ascii")
