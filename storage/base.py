"""The declarative base and the column types every model shares."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def dialect_insert(session: Session, model: type[Any]) -> sqlite.Insert | postgresql.Insert:
    """An INSERT for ``model`` with the database's own ON CONFLICT clause (SQLite and PostgreSQL share it)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def insert_ignoring_clashes(table: sa.Table, *index_elements: sa.Column[Any]) -> dict[str, sqlite.Insert | postgresql.Insert]:
    """An INSERT into ``table`` that skips a row clashing on ``index_elements``, built once for each database
    (by dialect name): for statements run so often that building them each time would cost more than running them."""
    return {name: insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
            for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always stored and returned as aware UTC.

    SQLite has no time zone type, so naive values read back from it are taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def enum_column(enum_cls: type[enum.Enum]) -> sa.Enum:
    """Store an enum by its value in a plain string column, so adding a member needs no migration."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[str]: sa.JSON(),
    }
