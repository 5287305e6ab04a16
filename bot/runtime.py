"""The settings, engine and session factory one process shares, built once from the environment."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from storage.db import alembic_config, make_engine, make_sessionmaker, upgrade


log = logging.getLogger(__name__)


class SchemaNotCurrent(RuntimeError):
    pass


@dataclass
class Runtime:
    settings: Settings

    @classmethod
    def from_env(cls) -> Runtime:
        return cls(Settings())

    @cached_property
    def engine(self) -> sa.Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    def upgrade_schema(self) -> None:
        upgrade(self.engine)

    def require_current_schema(self) -> None:
        """Refuse to run on a database that ``pdubot db upgrade`` has not brought up to date.

        A brand-new database, one with no tables at all, is given the schema instead: there is nothing in
        it to migrate, and a first ``pdubot import`` on the embedded default should simply work. A database
        at an older revision is refused, because upgrading one that holds data is a step taken on purpose.
        """
        head = ScriptDirectory.from_config(alembic_config(self.engine)).get_current_head()
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            empty = current is None and not sa.inspect(connection).get_table_names()
        if empty:
            log.warning("the database has no tables yet: creating the schema (revision %s)", head)
            self.upgrade_schema()
            return
        if current != head:
            raise SchemaNotCurrent(
                f"the database is at revision {current or 'none'}, not {head}: run `pdubot db upgrade` first"
            )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic narrates every schema check at INFO; keep that out of command output unless debugging.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
