"""A pool's usage over time: its figures (fleet.pool_figures: capacity, leased, queued)
sampled by the server, kept, thinned as they age, pushed to the consoles as they
change."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, delete, func, text
from sqlmodel import select

from backend.events import EventBus, woken
from backend.fleet.pools import pool_public
from backend.fleet.provisioners import provisioners_public
from backend.runs.leases import Leases
from backend.store.db import Store, for_client, pass_failed
from backend.store.models import Lease, UsageSample
from backend.store.sql import epoch
from wire.constants import HISTORY_S

log = logging.getLogger(__name__)

SAMPLE_S = 2.0  # a sample at least this often
QUICK_S = 0.2  # a lease taken or given back is sampled within this; also the fastest pace
HEARTBEAT_S = 60.0  # an unchanged pool is written again this often: its history has points
FULL_DETAIL_S = 3600  # older samples are thinned to the busiest one per THIN_S per pool
THIN_S = 300
KEEP_S = 7 * 86400
PRUNE_EVERY_S = 300

# Members' health and capacity are read again when a health check changed one (the
# checker says so) and at least this often anyway.
STATIC_REFRESH_S = 30.0
STATIC_MIN_GAP_S = 1.0  # however often they change, read at most this often

_MEMBERS = text("""
SELECT p.id, p.name, w.id, w.enabled AND w.check_status = 'healthy',
       w.enabled AND w.check_status = 'healthy' AND NOT w.draining, w.capacity, w.draining,
       w.name, p.description, p."default", p.engine
FROM pool p
LEFT JOIN pool_member pm ON pm.pool_id = p.id
LEFT JOIN worker w ON w.id = pm.worker_id
ORDER BY p.name, w.name
""")


class Figures:
    """Every pool's figures as fleet.pool_figures gives them, cheaply and often.

    What the members can hold (their health, capacity, draining) changes with health
    checks and fleet changes, and is read again after one (invalidate) or every
    STATIC_REFRESH_S; the slots in use change with every lease and are read each time,
    from the small lease table. With ten thousand workers that turns a sample from a
    join over the fleet into a count of a few hundred rows.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._read_at = -STATIC_REFRESH_S
        self._stale = True
        self._pools: dict[str, dict[str, Any]] = {}
        self._worker_pools: dict[int, list[str]] = {}
        self._able: dict[int, bool] = {}

    def invalidate(self) -> None:
        """A worker's health changed: read again soon (at most every STATIC_MIN_GAP_S)."""
        self._stale = True

    def reread(self) -> None:
        """Workers or pools were added, removed or changed: read again at the next use."""
        self._stale = True
        self._read_at = -STATIC_REFRESH_S

    def _refresh(self) -> None:
        pools: dict[str, dict[str, Any]] = {}
        worker_pools: dict[int, list[str]] = {}
        able_workers: dict[int, bool] = {}
        with self.store.read() as session:
            rows = session.connection().execute(_MEMBERS).all()
            provisioners = provisioners_public(session)
        for (pool_id, name, worker_id, healthy, able, capacity, draining, worker, description,
             default, engine) in rows:
            pool = pools.get(name)
            if pool is None:
                pool = pools[name] = {"pool_id": pool_id, "workers": 0, "healthy": 0,
                                      "able_capacity": 0, "draining": 0, "members": [],
                                      "description": description, "default": bool(default),
                                      "engine": engine,
                                      "provisioner": provisioners.get(pool_id)}
            if worker_id is None:
                continue
            pool["members"].append(worker)
            pool["workers"] += 1
            pool["healthy"] += bool(healthy)
            pool["draining"] += bool(draining)
            if able:
                pool["able_capacity"] += capacity
            worker_pools.setdefault(worker_id, []).append(name)
            able_workers[worker_id] = bool(able)
        self._pools, self._worker_pools, self._able = pools, worker_pools, able_workers

    def public(self, current: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Every pool as fleet.list_pools shows it, from figures `current` gave."""
        result = []
        for name, pool in sorted(self._pools.items()):
            figure = current.get(name)
            if figure is not None:
                result.append(pool_public(name, pool["description"], pool["default"],
                                          pool["engine"], pool["members"], figure,
                                          pool["provisioner"]))
        return result

    def current(self, queued: Mapping[str, int], *, exact: bool = False
                ) -> dict[str, dict[str, Any]]:
        """The figures now (call in a thread); `exact`: even just after a change (for a
        console's first look, which must not start from an old picture)."""
        age = time.monotonic() - self._read_at
        if age >= STATIC_REFRESH_S or (self._stale and (exact or age >= STATIC_MIN_GAP_S)):
            self._stale = False  # before reading: a change during the read is seen next time
            self._read_at = time.monotonic()
            self._refresh()
        with self.store.read() as session:
            held = session.exec(select(Lease.worker_id, func.count()).group_by(
                Lease.worker_id)).all()
        leased: dict[str, int] = {}
        extra: dict[str, int] = {}  # slots held on members that take no new leases
        for worker_id, count in held:
            able = self._able.get(worker_id, True)
            for name in self._worker_pools.get(worker_id, ()):
                leased[name] = leased.get(name, 0) + count
                if not able:
                    extra[name] = extra.get(name, 0) + count
        result = {}
        for name, pool in self._pools.items():
            capacity = pool["able_capacity"] + extra.get(name, 0)
            used = leased.get(name, 0)
            result[name] = {
                "capacity": capacity, "leased": used, "queued": queued.get(name, 0),
                "utilization": round(used / capacity, 3) if capacity else 0.0,
                "healthy_workers": pool["healthy"], "workers": pool["workers"],
                "draining_workers": pool["draining"], "pool_id": pool["pool_id"]}
        return result


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
        SELECT p.name, s.at, s.leased, s.capacity, s.queued FROM usage_sample s
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


def short(figure: dict[str, Any]) -> bool:
    """Fewer healthy workers than the two the seed recommends (a pool of one member:
    none), so that one more failure stops the pool's work."""
    return figure["healthy_workers"] < min(2, figure["workers"])


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
        self.figures = Figures(store)
        leases.listeners.append(self.wake)
        # Whether this node keeps the samples (one node of those sharing the store does:
        # the leader, backend/nodes.py); every node tells its own consoles.
        self.leads: Callable[[], bool] = lambda: True

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            await woken(self._wake, SAMPLE_S)
            self._wake.clear()
            try:
                await self.sample()
                if self.leads() and time.time() - self._pruned_at > PRUNE_EVERY_S:
                    await asyncio.to_thread(prune, self.store)
                    self._pruned_at = time.time()
            except Exception:  # a failed sample must not end sampling for good
                pass_failed(log, "sampling pool utilization failed")
            await asyncio.sleep(QUICK_S)

    async def sample(self) -> dict[str, dict[str, Any]]:
        """Take one sample now; return the pools whose figures changed."""
        current = await asyncio.to_thread(
            lambda: self.figures.current(self.leases.queued_by_pool()))
        now = time.time()
        changed = {name: figure for name, figure in current.items()
                   if name not in self.current or _key(figure) != _key(self.current[name])}
        due = {name: figure for name, figure in current.items()
               if name in changed or now - self._written_at.get(name, 0) >= HEARTBEAT_S}
        if due and self.leads():
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

    async def pools(self) -> list[dict[str, Any]]:
        """Every pool with its members and its figures now (the members from memory unless
        something changed)."""
        def read() -> list[dict[str, Any]]:
            queued = self.leases.queued_by_pool()
            return self.figures.public(self.figures.current(queued, exact=True))

        return await for_client(read)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self.store.write() as session:
            self.store.insert_rows(session, UsageSample.__table__, rows)


def public(name: str, figure: dict[str, Any], at: float) -> dict[str, Any]:
    return {"pool": name, "at": round(at, 1),
            **{k: v for k, v in figure.items() if k != "pool_id"}}


def prune(store: Store) -> None:
    """Drop samples past KEEP_S; past FULL_DETAIL_S keep the busiest per THIN_S per pool."""
    now = datetime.now(UTC)
    detail = now - timedelta(seconds=FULL_DETAIL_S)
    # Each older sample's rank in its pool's THIN_S: the busiest is first.
    ranked = select(UsageSample.id, func.row_number().over(
        partition_by=(UsageSample.pool_id, epoch(UsageSample.at) // THIN_S),
        order_by=(UsageSample.leased.desc(), UsageSample.id)).label("rank")
    ).where(UsageSample.at < detail).subquery()
    with store.write() as session:
        session.execute(delete(UsageSample).where(
            UsageSample.at < now - timedelta(seconds=KEEP_S)))
        session.execute(delete(UsageSample).where(
            UsageSample.id.in_(select(ranked.c.id).where(ranked.c.rank > 1))))
