"""The SQLite store: WAL mode, a busy timeout, immediate write transactions, migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from backend.migrations import migrate

BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 65_536


class StoreError(Exception):
    """The database cannot be opened or used; the message says why."""


def _engine(path: Path, *, immediate: bool) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # SQLAlchemy's "begin" event below is the only transaction control: pysqlite's
        # implicit BEGIN would be DEFERRED, and a deferred transaction that later
        # writes can fail with "database is locked" despite the busy timeout.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        dbapi_conn.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Store:
    """One SQLite file: readers see a snapshot (WAL), writers queue for one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                # Large pages (for a new file only; SQLite keeps an existing file's size):
                # run logs are stored as multi-megabyte chunks, which small pages split into
                # long overflow chains, three times slower to write.
                raw.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                raw.execute("PRAGMA journal_mode=WAL")
                migrate(raw)
            finally:
                raw.close()
            path.chmod(0o600)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open the database {path}: {exc}.") from exc
        self._reader = _engine(path, immediate=False)
        self._writer = _engine(path, immediate=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self._reader) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits as one immediate transaction, or not at all."""
        with Session(self._writer, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self._reader.dispose()
        self._writer.dispose()
