"""SQL that SQLite and PostgreSQL write differently, chosen by the database it is sent to.

Callers build their queries with these as with any SQLAlchemy function; the store's
dialect compiles each one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, String, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class epoch(FunctionElement[int]):
    """A stored time as whole Unix seconds."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch, "postgresql")
def _epoch_postgresql(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"


class json_text(FunctionElement[str]):
    """A top-level field of a JSON object stored as text, as text (NULL when absent):
    json_text(column, "name")."""

    type = String()
    inherit_cache = True
    name = "json_text"


@compiles(json_text, "sqlite")
def _json_text_sqlite(element: json_text, compiler: Any, **kw: Any) -> str:
    column, key = list(element.clauses)
    return (f"json_extract({compiler.process(column, **kw)}, "
            f"'$.' || {compiler.process(key, **kw)})")


@compiles(json_text, "postgresql")
def _json_text_postgresql(element: json_text, compiler: Any, **kw: Any) -> str:
    column, key = list(element.clauses)
    return f"(CAST({compiler.process(column, **kw)} AS JSON) ->> {compiler.process(key, **kw)})"


def database_now(session: Any) -> datetime:
    """The database's time: what every node's heartbeat and expiry are judged by, since no
    node's own clock is trusted. (SQLite is in this process: its time is this machine's.)"""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(select(func.now())).scalar_one()
    return datetime.now(UTC)
