"""Worker slots: a step leases one on a healthy, enabled worker of its pool, or waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlmodel import select

from backend.db import Store
from backend.errors import InvalidInput
from backend.models import HEALTHY, Lease, Pool, PoolMember, Worker


class NoWorker(InvalidInput):
    """The pool has no healthy, enabled worker: waiting would not help."""


@dataclass(frozen=True)
class Granted:
    lease_id: int
    worker_id: int
    worker: str
    reason: str


class Leases:
    """Leases in the store, and a signal for steps waiting for a slot to free up."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._freed = asyncio.Condition()

    def _try(self, pool: str, run_id: int, position: int, only: str | None = None
             ) -> Granted | None:
        with self.store.write() as session:
            pool_row = session.exec(select(Pool).where(Pool.name == pool)).first()
            if pool_row is None:
                raise NoWorker(f"No pool is named {pool!r}.")
            members = session.exec(
                select(Worker).join(PoolMember, PoolMember.worker_id == Worker.id)
                .where(PoolMember.pool_id == pool_row.id)).all()
            healthy = [w for w in members if w.enabled and w.status == HEALTHY
                       and (only is None or w.name == only)]
            if not healthy:
                raise NoWorker(f"Pool {pool!r} has no healthy, enabled worker "
                               f"({len(members)} members).")
            counts = Counter(dict(session.exec(
                select(Lease.worker_id, func.count()).group_by(Lease.worker_id)).all()))
            free = [w for w in healthy if counts[w.id] < w.capacity]
            if not free:
                return None
            chosen = min(free, key=lambda w: (counts[w.id], w.name))
            reason = (f"{chosen.name}: healthy, {counts[chosen.id]} of {chosen.capacity} slots "
                      f"in use, the fewest of {len(free)} with a free slot in {pool}")
            lease = Lease(worker_id=chosen.id, run_id=run_id, position=position, reason=reason)
            session.add(lease)
            session.flush()
            return Granted(lease.id, chosen.id, chosen.name, reason)

    async def acquire(self, pool: str, run_id: int, position: int, *, only: str | None = None,
                      on_wait: object = None) -> Granted:
        """A slot in `pool` (on worker `only` if given); waits while every slot is taken."""
        waited = False
        while True:
            granted = await asyncio.to_thread(self._try, pool, run_id, position, only)
            if granted is not None:
                return granted
            if not waited and callable(on_wait):
                on_wait()
                waited = True
            # Woken by a release, or after a second anyway: health may have changed too.
            async with self._freed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), 1.0)

    async def release(self, lease_id: int) -> None:
        await asyncio.to_thread(self._delete, Lease.id == lease_id)
        async with self._freed:
            self._freed.notify_all()

    async def release_run(self, run_id: int) -> None:
        await asyncio.to_thread(self._delete, Lease.run_id == run_id)
        async with self._freed:
            self._freed.notify_all()

    def _delete(self, condition: object) -> None:
        with self.store.write() as session:
            session.exec(delete(Lease).where(condition))

    def release_all(self) -> int:
        """At start: leases of a server that stopped hold no slot any more."""
        with self.store.write() as session:
            count = session.exec(select(func.count()).select_from(Lease)).one()
            session.exec(delete(Lease))
        return count

    def healthy_members(self, pool: str) -> list[str]:
        with self.store.read() as session:
            rows = session.exec(
                select(Worker.name).join(PoolMember, PoolMember.worker_id == Worker.id)
                .join(Pool, Pool.id == PoolMember.pool_id)
                .where(Pool.name == pool, Worker.enabled, Worker.status == HEALTHY)
                .order_by(Worker.name)).all()
        return list(rows)
