"""Pool utilization (fleet.pool_figures): sampled by the server, kept, thinned as it
ages, pushed to the consoles as it changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, insert, text

from backend.db import Store
from backend.events import EventBus
from backend.fleet import pool_figures
from backend.leases import Leases
from backend.models import PoolSample

log = logging.getLogger(__name__)

SAMPLE_S = 2.0  # a sample at least this often
QUICK_S = 0.2  # a lease taken or given back is sampled within this; also the fastest pace
HEARTBEAT_S = 60.0  # an unchanged pool is written again this often: its history has points
HISTORY_S = 600  # the history a console shows beside each pool
FULL_DETAIL_S = 3600  # older samples are thinned to the busiest one per THIN_S per pool
THIN_S = 300
KEEP_S = 7 * 86400
PRUNE_EVERY_S = 300

def _key(figure: dict[str, Any]) -> tuple[int, ...]:
    return (figure["capacity"], figure["leased"], figure["queued"], figure["healthy_workers"],
            figure["workers"], figure["draining_workers"])


def history(store: Store, pool: str | None = None, seconds: float = HISTORY_S
            ) -> dict[str, list[list[float]]]:
    """{pool: [[unix time, leased, capacity, queued], ...]} oldest first, over `seconds`.

    It starts with the last sample before the window, since an unchanged pool is only
    written once a minute.
    """
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds + HEARTBEAT_S)
    query = text("""
        SELECT p.name, s.at, s.leased, s.capacity, s.queued FROM pool_sample s
        JOIN pool p ON p.id = s.pool_id
        WHERE s.at >= :start""" + (" AND p.name = :pool" if pool is not None else "") + """
        ORDER BY s.pool_id, s.at""").bindparams(bindparam("start", type_=DateTime))
    params: dict[str, Any] = {"start": start}
    if pool is not None:
        params["pool"] = pool
    with store.read() as session:
        rows = session.connection().execute(query, params).all()
    window = time.time() - seconds
    result: dict[str, list[list[float]]] = {}
    for name, at, leased, capacity, queued in rows:
        moment = _epoch(at)
        points = result.setdefault(name, [])
        if points and moment <= window and points[-1][0] <= window:
            points.pop()  # only the last one before the window is needed
        points.append([round(moment, 1), leased, capacity, queued])
    return result


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC).timestamp()


class Usage:
    """Samples every pool's figures, writes what changed, publishes it."""

    def __init__(self, store: Store, leases: Leases, bus: EventBus) -> None:
        self.store = store
        self.leases = leases
        self.bus = bus
        self.current: dict[str, dict[str, Any]] = {}
        self._written_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._pruned_at = 0.0
        leases.listeners.append(self.wake)

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SAMPLE_S)
            self._wake.clear()
            try:
                await self.sample()
                if time.time() - self._pruned_at > PRUNE_EVERY_S:
                    await asyncio.to_thread(prune, self.store)
                    self._pruned_at = time.time()
            except Exception:  # a failed sample must not end sampling for good
                log.exception("sampling pool utilization failed")
            await asyncio.sleep(QUICK_S)

    async def sample(self) -> dict[str, dict[str, Any]]:
        """Take one sample now; return the pools whose figures changed."""
        current = await asyncio.to_thread(pool_figures, self.store,
                                          self.leases.queued_by_pool())
        now = time.time()
        changed = {name: figure for name, figure in current.items()
                   if name not in self.current or _key(figure) != _key(self.current[name])}
        due = {name: figure for name, figure in current.items()
               if name in changed or now - self._written_at.get(name, 0) >= HEARTBEAT_S}
        if due:
            at = datetime.fromtimestamp(now, UTC)
            await asyncio.to_thread(self._write, [
                {"pool_id": f["pool_id"], "at": at, "leased": f["leased"],
                 "capacity": f["capacity"], "queued": f["queued"]} for f in due.values()])
            for name in due:
                self._written_at[name] = now
        for name in set(self._written_at) - set(current):
            del self._written_at[name]
        self.current = current
        for name, figure in changed.items():
            self.bus.publish("usage", name, public(name, figure, now))
        return changed

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self.store.write() as session:
            session.execute(insert(PoolSample), rows)


def public(name: str, figure: dict[str, Any], at: float) -> dict[str, Any]:
    return {"pool": name, "at": round(at, 1),
            **{k: v for k, v in figure.items() if k != "pool_id"}}


_DROP_OLD = text("DELETE FROM pool_sample WHERE at < :gone").bindparams(
    bindparam("gone", type_=DateTime))
# SQLite gives the row holding the MAX() for a bare column: the busiest sample is kept.
_THIN = text("""
DELETE FROM pool_sample WHERE at < :detail AND id NOT IN (
    SELECT id FROM (SELECT id, MAX(leased) FROM pool_sample WHERE at < :detail
                    GROUP BY pool_id, CAST(strftime('%s', at) AS INTEGER) / :thin))
""").bindparams(bindparam("detail", type_=DateTime))


def prune(store: Store) -> None:
    """Drop samples past KEEP_S; past FULL_DETAIL_S keep the busiest per THIN_S per pool."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.write() as session:
        connection = session.connection()
        connection.execute(_DROP_OLD, {"gone": now - timedelta(seconds=KEEP_S)})
        connection.execute(_THIN, {"detail": now - timedelta(seconds=FULL_DETAIL_S),
                                   "thin": THIN_S})
