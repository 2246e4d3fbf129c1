"""The store: an SQLite file in the data directory, or a PostgreSQL database.

SQLite: WAL mode, a busy timeout, immediate write transactions. PostgreSQL: a pool of
connections checked before use (a restarted database is reconnected to), in UTC. On
both, write transactions queue for one lock, so that what callers read and then write
in one transaction is never raced by another writer. Migrations run at open
(schema.py).

It also knows when writes fail for a reason outside Workdeck (a full disk, a database
gone away), so that the server can say so and keep what it could not write until the
store works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, event, insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError
from sqlalchemy.sql import sqltypes
from sqlmodel import Session, create_engine

from backend import loopwatch
from backend.store import schema

BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 65_536
# PostgreSQL: how long to wait for a connection, and the one lock writers queue for
# (an advisory lock's key, any fixed number of Workdeck's own).
CONNECT_TIMEOUT_S = 5
WRITE_LOCK = 0x5764_0001

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0

DATA_DIR_FULL = "the data directory is full"
DATABASE_FULL = "the database's disk is full"
# What stops a step whose lines cannot be kept (backend/runs/attempts.py).
FULL = (DATA_DIR_FULL, DATABASE_FULL)


class StoreError(Exception):
    """The database cannot be opened or used; the message says why."""


def fault_kind(fault: str) -> str:
    """A fault as a bounded word (for metrics): full, unreachable, locked or unwritable."""
    said = fault.lower()
    return ("full" if "full" in said else "unreachable" if "reached" in said
            else "locked" if "locked" in said else "unwritable")


def fault_of(exc: BaseException) -> str | None:
    """What an error says about the store itself (None: it is not the store's fault)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return f"the database cannot be reached ({_first_line(exc.orig or exc)})"
        exc = exc.orig or exc
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        text = str(exc).lower()
        if "full" in text:
            return DATA_DIR_FULL
        if "locked" in text or "busy" in text:
            return "the database is locked by another process"
        if "i/o" in text or "readonly" in text or "read-only" in text or "unable to open" in text:
            return f"the database cannot be written ({exc})"
        return None
    return _postgresql_fault(exc)


def _postgresql_fault(exc: BaseException) -> str | None:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:  # never loaded: not a PostgreSQL error
        return None
    errors = psycopg.errors
    if isinstance(exc, errors.DiskFull | errors.OutOfMemory):
        return DATABASE_FULL
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return f"the database takes no writes now ({_first_line(exc)})"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # The server gone, restarting, refusing connections, or the link cut.
        return f"the database cannot be reached ({_first_line(exc)})"
    return None


def pass_failed(logger: logging.Logger, what: str, *args: Any) -> None:
    """Log the exception being handled, that failed a background pass (a sample, a
    sweep): with its traceback, unless the store's own fault is why, which the store says
    once, and the top bar shows, however many passes it fails."""
    exc = sys.exc_info()[1]
    fault = fault_of(exc) if exc is not None else None
    if fault is not None:
        logger.debug(f"{what} (%s)", *args, fault)
    else:
        logger.exception(what, *args)


def _first_line(exc: BaseException) -> str:
    """What went wrong, short: libpq's "connection failed: connection to server at ...,
    port ... failed: FATAL:  the database system is shutting down" says it at its end."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip()


def is_url(database: str) -> bool:
    return "://" in database


def database_url(database: str) -> URL:
    """A PostgreSQL URL as SQLAlchemy takes it (with psycopg), or a StoreError."""
    try:
        url = make_url(database)
    except (ArgumentError, ValueError):
        raise StoreError(f"{masked(database)!r} is not a database URL: give one like "
                         "postgresql://USER@HOST/DATABASE.") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise StoreError(f"Workdeck stores its data in SQLite (the default) or PostgreSQL, "
                         f"not {url.get_backend_name()!r}: give a postgresql:// URL.")
    return url.set(drivername="postgresql+psycopg")


def masked(database: str) -> str:
    """A database URL to show: its password hidden, wherever it was written."""
    try:
        url = make_url(database)
    except (ArgumentError, ValueError):
        return database.split("@")[-1]
    if "password" in url.query:
        url = url.update_query_dict({"password": "***"})
    shown = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def _copy_type(column: Any) -> str:
    """The PostgreSQL type of a column, as a binary COPY must name it exactly."""
    kind = column.type
    if isinstance(kind, sqltypes.BigInteger):
        return "int8"
    if isinstance(kind, sqltypes.Integer):
        return "int4"
    if isinstance(kind, sqltypes.Float):
        return "float8"
    if isinstance(kind, sqltypes.Boolean):
        return "bool"
    if isinstance(kind, sqltypes.DateTime) or isinstance(
            getattr(kind, "impl", None), sqltypes.DateTime):
        timezone = getattr(kind, "timezone", False) or getattr(
            getattr(kind, "impl", None), "timezone", False)
        return "timestamptz" if timezone else "timestamp"
    return "text"


def _sqlite_engine(path: Path, *, immediate: bool) -> Engine:
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


def _postgresql_engine(url: URL, *, writer: bool) -> Engine:
    engine = create_engine(
        url,
        # A connection left from before the database restarted is found dead and
        # replaced before it is used, not on a write that then has to be retried.
        pool_pre_ping=True, pool_size=8, max_overflow=8,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "workdeck",
                      # Times without a zone (raw SQL's parameters) are UTC, as on SQLite.
                      "options": "-c TimeZone=UTC"},
    )
    if writer:
        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Writers queue as on SQLite (BEGIN IMMEDIATE): a transaction that reads, then
            # writes what it read (a slot's count, the next line number), is never raced.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    return engine


class Store:
    """One database: readers see a snapshot, writers queue for one lock.

    `database` is the SQLite file's path, or a PostgreSQL URL.
    """

    def __init__(self, database: Path | str) -> None:
        # Why writes fail now (the data directory is full, say); None while they work.
        self.fault: str | None = None
        self.fault_counts: dict[str, int] = {}  # failed operations, by fault_kind
        self._fault_by_read = False  # found by a read: a read that works clears it
        # Writes waiting for the store that must be taken before held log lines (a run's
        # outcome): while there are any, logs hold their lines back (backend/runs/logstore.py),
        # or space freed on a full disk would go to the lines first.
        self.urgent = 0
        # Called in every write's transaction before it commits (raising refuses it):
        # how a node that was found lost is kept from writing over what the others did
        # (backend/nodes.py). A write with fenced=False is not asked (the heartbeat).
        self.fence: Callable[[Session], None] | None = None
        if isinstance(database, str) and is_url(database):
            self.dialect = "postgresql"
            self.where = masked(database)
            self._open_postgresql(database_url(database))
        else:
            self.dialect = "sqlite"
            self.where = str(database)
            self._open_sqlite(Path(database))

    def _open_sqlite(self, path: Path) -> None:
        try:
            raw = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                # Large pages (for a new file only; SQLite keeps an existing file's size):
                # run logs are stored as multi-megabyte chunks, which small pages split into
                # long overflow chains, three times slower to write.
                raw.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                raw.execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
            path.chmod(0o600)
            self._reader = _sqlite_engine(path, immediate=False)
            self._writer = _sqlite_engine(path, immediate=True)
            schema.upgrade(self._writer)
        except (sqlite3.DatabaseError, DatabaseError) as exc:
            raise StoreError(f"Cannot open the database {path}: {exc}.") from exc
        except schema.SchemaTooNewError as exc:
            raise StoreError(str(exc)) from None

    def libpq_url(self) -> str:
        """The PostgreSQL database's URL for a connection of its own (psycopg's)."""
        return self._writer.url.set(drivername="postgresql").render_as_string(
            hide_password=False)

    def _open_postgresql(self, url: URL) -> None:
        self._reader = _postgresql_engine(url, writer=False)
        self._writer = _postgresql_engine(url, writer=True)
        try:
            schema.upgrade(self._writer)
        except DBAPIError as exc:
            self.close()
            raise StoreError(f"Cannot use the database {self.where}: "
                             f"{_first_line(exc.orig or exc)}.") from None
        except schema.SchemaTooNewError as exc:
            self.close()
            raise StoreError(str(exc)) from None

    def _count(self, fault: str) -> None:
        kind = fault_kind(fault)
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1

    @contextmanager
    def read(self) -> Iterator[Session]:
        loopwatch.off_the_loop()
        with Session(self._reader) as session:
            try:
                yield session
            except Exception as exc:
                # A database gone away fails reads too: say so as for writes. (A full disk
                # fails only writes: reads never set or clear that.)
                fault = fault_of(exc)
                if fault is not None:
                    self._count(fault)
                if fault is not None and self.fault is None:
                    log.error("reading the store failed: %s (%s)", fault, exc)
                    self.fault, self._fault_by_read = fault, True
                raise
        if self._fault_by_read:
            log.warning("the store works again (it failed: %s)", self.fault)
            self.fault, self._fault_by_read = None, False

    @contextmanager
    def write(self, *, fenced: bool = True, queued: bool = True) -> Iterator[Session]:
        """A session whose work commits as one immediate transaction, or not at all.

        `queued=False` (PostgreSQL): a write that changes only its own row and reads
        nothing it then writes (a node's heartbeat) does not queue for the write lock
        behind every other write of every node."""
        loopwatch.off_the_loop()
        engine = self._writer if queued or self.dialect != "postgresql" else self._reader
        with Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                if fenced and self.fence is not None:
                    self.fence(session)
                session.commit()
            except BaseException as exc:
                with contextlib.suppress(Exception):  # a full disk can fail this too
                    session.rollback()
                fault = fault_of(exc)
                if fault is not None:
                    self._count(fault)
                    if fault != self.fault:
                        log.error("writing to the store failed: %s (%s)", fault, exc)
                    self.fault = fault
                raise
        if self.fault is not None:
            log.warning("the store works again (it failed: %s)", self.fault)
            self.fault, self._fault_by_read = None, False

    def insert_rows(self, session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
        """Many rows into one table, in `session`'s transaction; every row has the same keys.

        PostgreSQL takes them as one binary COPY stream, not a statement per row (binary:
        a log's text goes as it is, where the text format escapes every newline and tab,
        three times slower); SQLite, in this process, as one prepared statement run for
        each.
        """
        if not rows:
            return
        connection = session.connection()
        if self.dialect != "postgresql":
            connection.execute(insert(table), rows)
            return
        columns = list(rows[0])
        types = [_copy_type(table.c[column]) for column in columns]
        floats = [i for i, kind in enumerate(types) if kind == "float8"]
        into = ", ".join(f'"{column}"' for column in columns)
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
                f'COPY "{table.name}" ({into}) FROM STDIN (FORMAT BINARY)') as stream:
            stream.set_types(types)
            for row in rows:
                values = [row[column] for column in columns]
                for i in floats:  # binary float8 takes no int (a latency of 3 ms)
                    if values[i] is not None:
                        values[i] = float(values[i])
                stream.write_row(values)

    def close(self) -> None:
        self._reader.dispose()
        self._writer.dispose()


# Threads of their own for what a console waits on (its snapshot, say), so that it never
# queues behind the server's own store work (a busy run engine fills the default pool).
_CLIENT_READS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="client-reads")


async def for_client(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` in a thread kept for answering clients."""
    return await asyncio.get_running_loop().run_in_executor(
        _CLIENT_READS, functools.partial(fn, *args))


async def retrying(store: Store, fn: Callable[..., T], *args: Any, what: str,
                   urgent: bool = False,
                   on_wait: Callable[[], Awaitable[Any]] | None = None) -> T:
    """Run `fn(*args)` in a thread until the store answers it.

    For writes that must not be lost (a run's end, a slot given back), and for what a run
    under way must read to go on: a full disk, a locked database or one gone away delays
    them, with backoff, until it works again. Errors that are not the store's fault are
    raised at once. An `urgent` write goes before held log lines; `on_wait` is awaited
    once, when it first has to wait.
    """
    delay = RETRY_FIRST_S
    waiting = False
    try:
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except Exception as exc:
                if fault_of(exc) is None:
                    raise
                if not waiting:
                    waiting = True
                    log.warning("%s waits for the store: %s", what, fault_of(exc))
                    if urgent:
                        store.urgent += 1
                    if on_wait is not None:
                        await on_wait()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
    finally:
        if waiting and urgent:
            store.urgent -= 1
