"""Copying a whole store into an empty one (`workdeck db copy`): SQLite to PostgreSQL.

Every table in the order its references need, in batches, in one transaction on the
target: it has all of it or, when anything fails, nothing. The numbering of each table
goes on after the rows copied, and every table's rows are counted on both sides at the
end.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Table, func, insert, inspect, select, text
from sqlmodel import SQLModel

from backend.store import models  # noqa: F401 - registers the tables on SQLModel.metadata
from backend.store.db import Store, StoreError, _postgresql_engine, database_url, masked

BATCH_ROWS = 2_000


def tables() -> list[Table]:
    return list(SQLModel.metadata.sorted_tables)


def counts_of(store: Store) -> dict[str, int]:
    with store.read() as session:
        return counts(session.connection())


def counts(connection: Connection) -> dict[str, int]:
    """Each table's rows."""
    return {table.name: connection.execute(select(func.count()).select_from(table))
            .scalar_one() for table in tables()}


def refuse_unless_empty(database: str) -> None:
    """Refuse a target that holds anything: only an empty database, or one with
    Workdeck's tables and no rows in them, is copied into."""
    # Its engine only: opening it as a Store would make Workdeck's tables first.
    engine = _postgresql_engine(database_url(database), writer=False)
    try:
        with engine.connect() as connection:
            names = set(inspect(connection).get_table_names()) - {"alembic_version"}
            ours = {table.name for table in tables()}
            if names - ours:
                raise StoreError(
                    f"The database {masked(database)} is not empty: it holds tables that "
                    f"are not Workdeck's ({', '.join(sorted(names - ours)[:3])}); copy into "
                    "an empty database.")
            full = [name for name in sorted(names) if connection.execute(
                text(f'SELECT EXISTS (SELECT 1 FROM "{name}")')).scalar()]
            if full:
                raise StoreError(
                    f"The database {masked(database)} is not empty: it already holds "
                    f"Workdeck's data ({', '.join(full[:3])}); copy into an empty database.")
    finally:
        engine.dispose()


def copy(source: Store, target: Store,
         progress: Callable[[int], None] = lambda _rows: None) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; return the rows per table.

    `progress` is told each batch's rows as they are copied.
    """
    copied: dict[str, int] = {}
    with source.read() as reading, target.write() as writing:
        src, dst = reading.connection(), writing.connection()
        for table in tables():
            copied[table.name] = 0
            order = list(table.primary_key.columns)
            result = src.execution_options(yield_per=BATCH_ROWS).execute(
                select(table).order_by(*order))
            for batch in result.partitions(BATCH_ROWS):
                rows = [row._asdict() for row in batch]
                dst.execute(insert(table), rows)
                copied[table.name] += len(rows)
                progress(len(rows))
            _go_on_numbering(dst, table)
        # Counted on both sides before the copy is committed: a difference leaves nothing.
        have, found = counts(src), counts(dst)
        wrong = [name for name in have if not have[name] == copied[name] == found[name]]
        if wrong:
            raise StoreError("The copy was not kept: " + ", ".join(
                f"{name} has {have[name]} rows, {copied[name]} copied, {found[name]} found"
                for name in wrong) + ".")
    return copied


def _go_on_numbering(connection: Connection, table: Table) -> None:
    """The next row added to `table` takes the number after the last one copied."""
    if connection.dialect.name != "postgresql":
        return
    for column in table.primary_key.columns:
        if column.autoincrement is True or (column.autoincrement == "auto"
                                            and len(table.primary_key.columns) == 1
                                            and column.type.python_type is int
                                            and not column.foreign_keys):
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f'COALESCE(MAX("{column.name}"), 1), MAX("{column.name}") IS NOT NULL) '
                f'FROM "{table.name}"'))
