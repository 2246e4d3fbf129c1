"""Worker slots: a step leases one on a healthy, enabled worker of its pool, or queues.

Leases live in the store (so a restart can tell what was held), and so does the queue
(`step_wait`), shared by every node using the store: waiters are served first come,
first served per pool, whichever node executes their runs. A step never overtakes an
earlier one for the same pool, except when the earlier one waits for one particular
worker (a `run_on = "all"` step) that is still full. Each node grants its own waiters,
keeping a place for the earlier waiters of the others (they are granted by their node
at its next pass, woken by the fan-out or within RECHECK_S).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, select

from backend.errors import InvalidInput
from backend.events import woken
from backend.fleet import iso
from backend.runs.backlog import Backlog
from backend.store.db import Store, pass_failed, retrying
from backend.store.models import (
    HEALTHY,
    UNKNOWN,
    Lease,
    Pool,
    PoolMember,
    Provisioner,
    Run,
    StepWait,
    Worker,
    utcnow,
)
from backend.transport.remote import StepProcess

log = logging.getLogger(__name__)

RECHECK_S = 1.0  # waiters look again this often anyway: a worker's health may have changed


class NoWorker(InvalidInput):
    """The pool has no healthy, enabled worker: waiting would not help."""


@dataclass(frozen=True)
class Granted:
    lease_id: int
    worker_id: int
    worker: str
    worker_reason: str  # why this worker was chosen


@dataclass(eq=False)
class Waiter:
    pool: str
    run_id: int
    position: int
    step_name: str
    only: str | None
    since: datetime = field(default_factory=utcnow)
    on_wait: Callable[[], None] | None = None  # told once, when it has to wait
    avoid: frozenset[str] = frozenset()  # taken last: a retry's failed worker
    future: asyncio.Future[Granted] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    row: int = 0  # its place in the shared queue (StepWait), once it had to wait
    queued: int = 0  # the place being given to it, until its transaction holds


class Leases:
    """Leases in the store, the queue of steps waiting for a slot, and who gets the next."""

    def __init__(self, store: Store, backlog: Backlog | None = None) -> None:
        self.store = store
        # Slots a step or a run gives back go in order with what its run became.
        self.backlog = backlog or Backlog(store)
        self.queue: list[Waiter] = []  # oldest first, every pool
        self.listeners: list[Callable[[], None]] = []  # told when leases or the queue change
        self.orphan_listeners: list[Callable[[], None]] = []  # told when a step is orphaned
        # Told (pool, seconds) when a step gets its slot, for how long it waited.
        self.wait_listeners: list[Callable[[str, float], None]] = []
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        # This node, and the nodes alive now (None: every waiter in the store counts).
        self.node = ""
        self.live: Callable[[], frozenset[str] | None] = lambda: None

    # -------------------------------------------------------- taking and giving back

    async def acquire(self, pool: str, run_id: int, position: int, *, step_name: str = "",
                      only: str | None = None, on_wait: Callable[[], None] | None = None,
                      avoid: frozenset[str] = frozenset()) -> Granted:
        """A slot in `pool` (on worker `only` if given); queues while every slot is taken.

        Workers in `avoid` (where a retried step just failed) are taken only when no other
        has a free slot.

        Every request joins the queue first, so two that come at once are served in the
        order they came; `on_wait` is called once if the first look finds no free slot.
        """
        waiter = Waiter(pool, run_id, position, step_name, only, on_wait=on_wait, avoid=avoid)
        self.queue.append(waiter)
        self._changed()
        self._ensure_dispatcher()
        self._wake.set()
        try:
            granted = await waiter.future
            for listener in self.wait_listeners:
                listener(pool, (utcnow() - waiter.since).total_seconds())
            return granted
        except asyncio.CancelledError:
            # Granted just as the step was cancelled: the slot goes back at once.
            if waiter.future.done() and not waiter.future.cancelled() \
                    and waiter.future.exception() is None:
                _background(self.release(waiter.future.result().lease_id, run_id))
            raise
        finally:
            if waiter in self.queue:
                self.queue.remove(waiter)
                self._changed()
            self._leave(waiter)

    def _leave(self, waiter: Waiter) -> None:
        """A waiter that will not be granted gives its place in the shared queue back (a
        grant takes it in the same transaction)."""
        if waiter.row and not (waiter.future.done() and not waiter.future.cancelled()
                               and waiter.future.exception() is None):
            row, waiter.row = waiter.row, 0
            _background(self.backlog.write(
                waiter.run_id, partial(self._delete_waits, StepWait.id == row),
                what=f"leaving the queue of {waiter.pool}"))

    def _delete_waits(self, condition: object) -> None:
        with self.store.write() as session:
            session.exec(delete(StepWait).where(condition))  # type: ignore[call-overload]

    async def release(self, lease_id: int, run_id: int) -> None:
        """Give a slot back; a store that fails only delays it (the slot must not leak)."""
        await self.backlog.write(run_id, partial(self._delete, Lease.id == lease_id),
                                 what=f"giving back lease {lease_id}")
        self.wake()

    async def release_run(self, run_id: int) -> None:
        """Give back a run's slots, but those of orphaned steps: their processes may live;
        and its places in the queue, if any were left."""
        await self.backlog.write(
            run_id, partial(self._delete, (Lease.run_id == run_id) & (Lease.orphan == "")),
            what=f"giving back the slots of run {run_id}")
        await self.backlog.write(run_id, partial(self._delete_waits, StepWait.run_id == run_id),
                                 what=f"the queue places of run {run_id}")
        self.wake()

    async def record_process(self, lease_id: int, process: StepProcess) -> None:
        """The step's processes are known: a server started after a crash can kill them."""

        def write() -> None:
            with self.store.write() as session:
                lease = session.get(Lease, lease_id)
                if lease is not None:
                    lease.marker, lease.pgid = process.marker, process.pgid
                    lease.boot_id, lease.proc_start = process.boot_id, process.started
                    lease.container = process.container
                    session.add(lease)

        await retrying(self.store, write, what=f"recording the processes of lease "
                                                       f"{lease_id}")

    async def orphan(self, lease_id: int, reason: str) -> None:
        """The step ended but its processes may live on: keep the slot until they are
        confirmed gone (backend.orphans)."""

        def write() -> None:
            with self.store.write() as session:
                lease = session.get(Lease, lease_id)
                if lease is not None:
                    lease.orphan = reason
                    session.add(lease)

        await retrying(self.store, write, what=f"orphaning lease {lease_id}")
        self.wake()
        for listener in self.orphan_listeners:
            listener()

    def recover(self, reason: str, nodes: list[str]) -> int:
        """At start: a lease of a run of `nodes` (this node's last life) holds no slot any
        more, unless its step's processes may still run: those are orphans, held until
        killed. Returns the number of orphans."""
        with self.store.write() as session:
            session.exec(delete(StepWait).where(StepWait.node.in_(nodes)))  # type: ignore[call-overload, attr-defined]
            theirs = Lease.run_id.in_(select(Run.id).where(Run.node.in_(nodes)))  # type: ignore[attr-defined]
            session.exec(delete(Lease).where(theirs, Lease.marker == "",  # type: ignore[call-overload]
                                             Lease.pgid == None))  # noqa: E711
            orphans = session.exec(select(Lease).where(theirs, Lease.orphan == "")).all()
            for lease in orphans:
                lease.orphan = reason
                session.add(lease)
            return session.exec(select(func.count()).select_from(Lease).where(theirs)).one()

    def wake(self) -> None:
        """Slots may have freed up or workers changed: serve the queue again now."""
        self._wake.set()
        self._changed()

    def serve_soon(self) -> None:
        """Another node's slots or queue changed: serve this node's waiters again now."""
        self._wake.set()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def _delete(self, condition: object) -> None:
        with self.store.write() as session:
            session.exec(delete(Lease).where(condition))

    # -------------------------------------------------------- choosing a worker

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch_forever())

    async def _dispatch_forever(self) -> None:
        while self.queue:
            self._wake.clear()
            try:
                await self._dispatch()
            except Exception:  # a failed pass (a busy store) must not strand the queue
                pass_failed(log, "serving the queue of steps waiting for a slot failed")
            if self.queue:
                await woken(self._wake, RECHECK_S)

    async def _dispatch(self) -> None:
        waiting = [w for w in self.queue if not w.future.done()]
        if not waiting:
            return
        outcomes = await asyncio.to_thread(self._grant_in_order, waiting)
        for waiter, outcome in zip(waiting, outcomes, strict=True):
            if outcome is None:
                if waiter.on_wait is not None and not waiter.future.done():
                    told, waiter.on_wait = waiter.on_wait, None
                    told()
                continue
            if waiter.future.done():  # cancelled meanwhile: give its slot back
                if isinstance(outcome, Granted):
                    await self.release(outcome.lease_id, waiter.run_id)
                self._leave(waiter)  # or its place in the queue, taken meanwhile
                continue
            if isinstance(outcome, Granted):
                waiter.future.set_result(outcome)
            else:
                waiter.future.set_exception(outcome)

    def _grant_in_order(self, waiting: list[Waiter]) -> list[Granted | NoWorker | None]:
        # One transaction for the whole queue, every node's, oldest first: the counts it
        # goes by are the ones it updates as it grants. Another node's waiter is not
        # granted here, but keeps its place: the slot it would take is counted as taken.
        # A waiter new since the last pass comes after every one queued already: granted
        # if a slot is left for it, else queued (given its place) in this transaction.
        mine = {waiter.row: waiter for waiter in waiting if waiter.row}
        for waiter in waiting:
            waiter.queued = 0  # what a pass that failed left
        outcomes: dict[int, Granted | NoWorker | None] = {}  # by id(waiter)
        blocked: set[str] = set()  # pools whose head could not be served by any worker
        live = self.live()
        with self.store.write() as session:
            leased = _leased(session)
            for row in session.exec(select(StepWait).order_by(StepWait.id)).all():
                waiter = mine.get(row.id or 0)
                if waiter is None and (row.node == self.node or
                                       (live is not None and row.node not in live)):
                    continue  # left by a step that ended, or by a node that is gone
                if row.pool in blocked:
                    continue
                only = row.worker or None
                try:
                    granted = _grant(session, leased, row.pool, row.run_id, row.position,
                                     row.step_name, only, frozenset(json.loads(row.avoid)),
                                     hold=waiter is not None)
                except NoWorker as exc:
                    if waiter is not None:
                        outcomes[id(waiter)] = exc
                    continue
                if granted is None and only is None:
                    blocked.add(row.pool)
                if waiter is not None:
                    outcomes[id(waiter)] = granted
                    if granted is not None:
                        session.delete(row)
            for waiter in waiting:
                if waiter.row:
                    continue
                granted = None
                if waiter.pool not in blocked:
                    try:
                        granted = _grant(session, leased, waiter.pool, waiter.run_id,
                                         waiter.position, waiter.step_name, waiter.only,
                                         waiter.avoid)
                    except NoWorker as exc:
                        outcomes[id(waiter)] = exc
                        continue
                    if granted is None and waiter.only is None:
                        blocked.add(waiter.pool)
                outcomes[id(waiter)] = granted
                if granted is None:
                    row = StepWait(node=self.node, run_id=waiter.run_id,
                                   position=waiter.position, step_name=waiter.step_name,
                                   pool=waiter.pool, worker=waiter.only or "",
                                   avoid=json.dumps(sorted(waiter.avoid)), since=waiter.since)
                    session.add(row)
                    session.flush()
                    waiter.queued = row.id or 0
        for waiter in waiting:  # their places, once the transaction holds
            if waiter.queued:
                waiter.row, waiter.queued = waiter.queued, 0
        return [outcomes.get(id(waiter)) for waiter in waiting]

    # -------------------------------------------------------- looking

    def queued_by_pool(self) -> Counter[str]:
        """Steps waiting for a slot, by pool, whichever node runs them (in a thread)."""
        with self.store.read() as session:
            query = select(StepWait.pool, func.count()).group_by(StepWait.pool)
            live = self.live()
            if live is not None:
                query = query.where(StepWait.node.in_(live))  # type: ignore[attr-defined]
            return Counter(dict(session.exec(query).all()))

    def waits(self, pool: str) -> list[StepWait]:
        """The steps waiting for a slot in `pool`, oldest first, whichever node executes
        each (in a thread)."""
        with self.store.read() as session:
            rows = session.exec(select(StepWait).where(StepWait.pool == pool)
                                .order_by(StepWait.id)).all()
        live = self.live()
        return [row for row in rows if live is None or row.node in live]

    def queue_of(self, pool: str) -> list[dict[str, Any]]:
        """The queue of `pool` as shown (in a thread)."""
        return [{"run_id": row.run_id, "position": row.position, "step_name": row.step_name,
                 "pool": row.pool, "worker": row.worker or None, "since": iso(row.since),
                 "node": row.node,
                 "step": row.step_name}  # its name of one release ago (README, "Changed")
                for row in self.waits(pool)]

    def next_worker(self, pool: str) -> str | None:
        """The worker a step of `pool` would be given now (None: it would queue)."""
        with self.store.read() as session:
            try:
                free = _free(_members(session, pool), _leased(session), pool)
            except NoWorker:
                return None
        return free[0].name if free else None

    def every_member(self, pool: str) -> tuple[list[str], list[tuple[str, str]]]:
        """For a `run_on = "all"` step: the members that can take it (healthy, enabled,
        not draining), and the others with why not, each sorted by name."""
        with self.store.read() as session:
            members = sorted(_members(session, pool), key=lambda w: w.name)
        able = [w.name for w in members if unable_because(w) is None]
        others = [(w.name, why) for w in members if (why := unable_because(w)) is not None]
        return able, others


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    """Run `coro` to its end even though nobody waits for it (kept from the collector)."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _leased(session: Session) -> Counter[int]:
    return Counter(dict(session.exec(
        select(Lease.worker_id, func.count()).group_by(Lease.worker_id)).all()))


def _members(session: Session, pool: str) -> list[Worker]:
    pool_row = session.exec(select(Pool).where(Pool.name == pool)).first()
    if pool_row is None:
        raise NoWorker(f"No pool is named {pool!r}.")
    return list(session.exec(
        select(Worker).join(PoolMember, PoolMember.worker_id == Worker.id)
        .where(PoolMember.pool_id == pool_row.id)).all())


def _provisioned(session: Session, pool: str) -> bool:
    """The pool makes workers on demand (a provisioner that may make at least one)."""
    return session.exec(select(Provisioner.max_workers).join(Pool, Pool.id ==
                                                              Provisioner.pool_id)
                        .where(Pool.name == pool, Provisioner.max_workers > 0)).first() \
        is not None


def unable_because(worker: Worker) -> str | None:
    """Why a worker cannot take a new step now (None: it can)."""
    if not worker.enabled:
        return "disabled"
    if worker.draining:
        return "draining"
    if worker.check_status != HEALTHY:
        return worker.check_status + (f": {worker.reason}" if worker.reason else "")
    return None


def _free(members: list[Worker], leased: Counter[int], pool: str,
          only: str | None = None, can_grow: Callable[[], bool] = lambda: False
          ) -> list[Worker]:
    """The members that can take a step now, the best choice first: healthy, enabled,
    not draining, with a free slot, fewest leases (then name). NoWorker when none is able
    at all, so that waiting would not help, unless the pool `can_grow`: its provisioner
    makes a worker for a step that waits."""
    if only is not None:
        # A step for one worker (its share of a `run_on = "all"` step): only that
        # worker's state matters, and the refusal names it.
        wanted = [w for w in members if w.name == only]
        why = unable_because(wanted[0]) if wanted else f"no longer in {pool}"
        if why is not None:
            raise NoWorker(f"{only} cannot take the step: {why}.")
        members = wanted
    able = [w for w in members if unable_because(w) is None]
    if not able and can_grow():
        return []
    if not able and any(w.enabled and not w.draining and w.check_status == UNKNOWN
                        for w in members):
        # A member not checked yet (the server has just started, or it was just added)
        # is checked within seconds: the step waits for it rather than failing.
        return []
    if not able:
        draining = sum(1 for w in members if w.draining)
        raise NoWorker(f"Pool {pool!r} has no healthy, enabled worker "
                       f"({len(members)} members" + (f", {draining} draining" if draining
                                                     else "") + ").")
    return sorted((w for w in able if leased[w.id] < w.capacity),
                  key=lambda w: (leased[w.id], w.name))


def _grant(session: Session, leased: Counter[int], pool: str, run_id: int, position: int,
           step_name: str, only: str | None, avoid: frozenset[str] = frozenset(), *,
           hold: bool = True) -> Granted | None:
    """A lease on the member with the fewest leases, or None when all are full. Without
    `hold`, the slot is only counted as taken (kept for another node's waiter)."""
    free = _free(_members(session, pool), leased, pool, only,
                 lambda: _provisioned(session, pool))
    if not free:
        return None
    others = [w for w in free if w.name not in avoid]
    chosen = (others or free)[0]
    if not hold:
        leased[chosen.id] += 1
        return Granted(0, chosen.id, chosen.name, "")
    reason = (f"{chosen.name}: healthy, {leased[chosen.id]} of {chosen.capacity} slots "
              f"in use, the fewest of {len(free)} with a free slot in {pool}")
    if avoid and others:
        reason += f" (not {', '.join(sorted(avoid))}, where it just failed)"
    elif avoid:
        reason += " (the only one free, though it just failed there)"
    lease = Lease(worker_id=chosen.id, run_id=run_id, position=position, step_name=step_name,
                  pool=pool, worker_reason=reason)
    session.add(lease)
    session.flush()
    leased[chosen.id] += 1
    return Granted(lease.id, chosen.id, chosen.name, reason)


def leases_of(store: Store, pool: str) -> list[dict[str, Any]]:
    """The leases held on a pool's members (through whichever pool they were taken)."""
    with store.read() as session:
        rows = session.exec(
            select(Lease, Worker.name, Run.runbook)
            .join(Worker, Worker.id == Lease.worker_id)
            .join(PoolMember, PoolMember.worker_id == Worker.id)
            .join(Pool, Pool.id == PoolMember.pool_id)
            .join(Run, Run.id == Lease.run_id)
            .where(Pool.name == pool).order_by(Lease.since)).all()
    return [{"run_id": lease.run_id, "runbook": runbook, "position": lease.position,
             "step_name": lease.step_name, "worker": worker, "pool": lease.pool,
             "since": iso(lease.since), "worker_reason": lease.worker_reason,
             "orphan": lease.orphan,
             # Their names of one release ago (README, "Changed").
             "step": lease.step_name, "reason": lease.worker_reason}
            for lease, worker, runbook in rows]

