"""Engines and sessions for the embedded SQLite default and for PostgreSQL, plus schema upgrades."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session, sessionmaker

import storage.changes  # noqa: F401  (registers the models on the metadata)
import storage.documents  # noqa: F401
import storage.jobs  # noqa: F401
import storage.mailing  # noqa: F401
import storage.mailouts  # noqa: F401
import storage.mailstate  # noqa: F401
import storage.outbox  # noqa: F401
import storage.registry  # noqa: F401
import storage.reminders  # noqa: F401
import storage.tickets  # noqa: F401
from storage.base import Base

MIGRATIONS = Path(__file__).parent / "migrations"


def _tune_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while intake writes; the busy timeout makes concurrent writers wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> sa.Engine:
    """Create an engine for ``url``; an SQLite file's folder is created when missing."""
    parsed = sa.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _tune_sqlite)
        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` through the Alembic migrations (the only way the schema changes)."""
    command.upgrade(alembic_config(engine), revision)


metadata = Base.metadata
