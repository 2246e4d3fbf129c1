"""Orphaned steps: processes that may outlive the step that started them, until killed.

A step that did not end with an exit status (a lost connection, a timeout or cancel
whose kill could not be confirmed, a server killed mid-step) leaves its lease marked
orphan: the slot stays taken, shown with a reason, while the reaper reconnects to the
worker, kills what is left of the step's process group (checking by boot id and start
time that it is still the step's) and only then gives the slot back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import select

from backend.events import EventBus, woken
from backend.fleet import audit
from backend.runs.leases import Leases
from backend.store.db import Store, pass_failed, retrying
from backend.store.models import Lease, Run, Worker
from backend.transport.remote import StepProcess, Transport, kill_group

log = logging.getLogger(__name__)

FIRST_RETRY_S = 2.0  # an unreachable worker is tried again after this, then less often
MAX_RETRY_S = 60.0


class Reaper:
    def __init__(self, store: Store, leases: Leases, bus: EventBus,
                 transport_to: Callable[[str], Awaitable[Transport]],
                 publish_worker: Callable[[str], Awaitable[None]]) -> None:
        self.store = store
        self.leases = leases
        self.bus = bus
        self.transport_to = transport_to  # how to reach a worker (transport.reach)
        self.publish_worker = publish_worker
        self._wake = asyncio.Event()
        self._retry: dict[int, float] = {}  # lease id -> the wait before its next try
        self._next: dict[int, float] = {}  # lease id -> when it is tried again (loop time)
        # The node whose runs' orphans this reaper kills (each node its own: a node that
        # took over a lost one's runs, those too).
        self.node = ""

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reap()
            except Exception:  # one bad pass must not end reaping for good
                pass_failed(log, "killing what is left of orphaned steps failed")
            waits = [when - asyncio.get_running_loop().time() for when in self._next.values()]
            await woken(self._wake, max(0.2, min(waits, default=MAX_RETRY_S)))

    async def reap(self) -> int:
        """One pass over the orphans that are due; return how many were freed."""
        orphans = await asyncio.to_thread(self._orphans)
        now = asyncio.get_running_loop().time()
        due = [o for o in orphans if self._next.get(o["id"], 0) <= now]
        known = {o["id"] for o in orphans}
        for lease_id in list(self._next):
            if lease_id not in known:
                self._next.pop(lease_id, None)
                self._retry.pop(lease_id, None)
        results = await asyncio.gather(*(self._reap_one(o) for o in due))
        return sum(results)

    def _orphans(self) -> list[dict[str, Any]]:
        with self.store.read() as session:
            rows = session.exec(select(Lease, Worker.name).join(
                Worker, Worker.id == Lease.worker_id).join(Run, Run.id == Lease.run_id)
                .where(Lease.orphan != "", Run.node.in_([self.node, ""]))).all()  # type: ignore[attr-defined]
        return [{"id": lease.id, "worker": name, "run_id": lease.run_id,
                 "position": lease.position, "orphan": lease.orphan,
                 "process": StepProcess(lease.marker, lease.pgid, lease.boot_id,
                                        lease.proc_start, lease.container)}
                for lease, name in rows]

    async def _reap_one(self, orphan: dict[str, Any]) -> bool:
        worker, lease_id = orphan["worker"], orphan["id"]
        try:
            transport = await self.transport_to(worker)
            gone = await kill_group(transport, orphan["process"])
            why = "" if gone else "its processes did not die"
        except Exception as exc:
            gone, why = False, str(exc) or exc.__class__.__name__
        if not gone:
            wait = min(MAX_RETRY_S, self._retry.get(lease_id, FIRST_RETRY_S / 2) * 2)
            self._retry[lease_id] = wait
            self._next[lease_id] = asyncio.get_running_loop().time() + wait
            reason = (f"{orphan['orphan'].split('; not killed yet:')[0]}; not killed yet: "
                      f"{why}")
            if reason != orphan["orphan"]:
                await self.leases.orphan(lease_id, reason)
                await self.publish_worker(worker)
            return False

        def free() -> None:
            with self.store.write() as session:
                lease = session.get(Lease, lease_id)
                if lease is not None:
                    session.delete(lease)
                    audit(session, "server", "run.orphan_killed", f"run {orphan['run_id']}",
                          f"step {orphan['position']} on {worker}: what was left of it is "
                          f"gone ({orphan['orphan'].split('; not killed yet:')[0]})")

        await retrying(self.store, free, what=f"freeing orphan lease {lease_id}")
        self._retry.pop(lease_id, None)
        self._next.pop(lease_id, None)
        log.info("orphaned step %s of run %s on %s: killed, slot given back",
                 orphan["position"], orphan["run_id"], worker)
        self.leases.wake()
        await self.publish_worker(worker)
        return True
