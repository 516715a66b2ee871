"""Migration steps that leave alone what the store already has, and the checks that find it.

Stores made before the migrations existed were brought up to date on open by hand-written code, which
added missing columns (with the indexes of their tables) and created missing tables; a command that did
not create tables (``status``) added only the columns. Such a store is stamped at the newest revision it
fully has (each revision's ``applied``) and upgraded from there, so a later revision may find part of its
work done: every step here checks first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alembic import op
from sqlalchemy import BigInteger, Column, Integer, inspect
from sqlalchemy.engine.reflection import Inspector

#: Integer columns are 64-bit on PostgreSQL (instants in microseconds overflow its 32-bit INTEGER) and
#: ``INTEGER`` on SQLite, whose integer primary keys are the row id. PostgreSQL stores began with the
#: third revision, which had 64-bit integers already, so the first revision creates them so too.
INT = BigInteger().with_variant(Integer(), "sqlite")


def _schema() -> Inspector:
    return inspect(op.get_bind())


def has(
    schema: Inspector,
    *,
    tables: Iterable[str] = (),
    columns: Mapping[str, Iterable[str]] | None = None,
    indexes: Mapping[str, Iterable[str]] | None = None,
) -> bool:
    """Whether the store has all these tables, columns (by table) and indexes (by table)."""
    if not all(schema.has_table(name) for name in tables):
        return False
    for table, names in (columns or {}).items():
        if not schema.has_table(table) or not set(names) <= column_names(schema, table):
            return False
    for table, names in (indexes or {}).items():
        if not schema.has_table(table) or not set(names) <= index_names(schema, table):
            return False
    return True


def column_names(schema: Inspector, table: str) -> set[str]:
    return {column["name"] for column in schema.get_columns(table)}


def index_names(schema: Inspector, table: str) -> set[str]:
    return {str(index["name"]) for index in schema.get_indexes(table)}


def create_table(name: str, *elements: Any, **kwargs: Any) -> None:
    """Create table ``name`` unless the store has it."""
    if not _schema().has_table(name):
        op.create_table(name, *elements, **kwargs)


def add_column(table: str, column: Column[Any]) -> None:
    """Add ``column`` to ``table`` unless the table has it; rows already there take its server default."""
    if column.name not in column_names(_schema(), table):
        op.add_column(table, column)


def create_index(name: str, table: str, columns: list[str], **kwargs: Any) -> None:
    """Create index ``name`` unless ``table`` has it."""
    if name not in index_names(_schema(), table):
        op.create_index(name, table, columns, **kwargs)


def drop_index(name: str, table: str) -> None:
    """Drop index ``name`` if ``table`` has it."""
    if name in index_names(_schema(), table):
        op.drop_index(name, table_name=table)
