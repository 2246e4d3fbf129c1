"""Health checks: on a schedule spread with jitter, or now on request; results kept in batches."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend import fleet
from backend.events import EventBus, woken
from backend.health import probe, results
from backend.health.results import Outcome
from backend.store.db import Store, pass_failed
from backend.store.models import UNAVAILABLE, utcnow
from backend.transport.reach import Reach, Target
from backend.transport.ssh import Endpoint, HostKeyRefused, SSHFailure
from wire.server import Policy

log = logging.getLogger(__name__)

MAX_CHECKS_IN_FLIGHT = 512
FLUSH_INTERVAL_S = 0.25
STATIC_REFRESH_EVERY = 30  # checks between two refreshes of OS, kernel and CPU facts
ENGINE_EVERY = 10  # of those refreshes, one asks which container engine answers
TARGETS_TTL_S = 60.0  # the longest the schedule works from its copy of the workers (changes
# to workers invalidate it at once; this only bounds what a missed one could cost)
START_BATCH = 50  # checks started between two looks at the rest of the event loop
PUBLISH_BATCH = 250  # results published between two looks
BACKOFF_MAX_S = 600.0  # the longest an unreachable worker waits for its next check


@dataclass
class _Remembered:
    """Facts a routine check does not gather again, from this worker's earlier checks."""

    static: dict[str, Any] = field(default_factory=dict)
    disks: list[dict[str, Any]] = field(default_factory=list)
    checks: int = 0
    since_disk: int = 0
    # Where this worker starts in the cycles of slow facts (the worker's id): a fleet
    # first checked in one sweep would otherwise read every disk in the same sweep, one
    # in five, ever after (a `df` forked on each worker at once); staggered, each sweep
    # reads a fifth of them.
    phase: int = 0
    started: bool = False
    fulls: int = 0  # full checks so far: the container engine is asked on some of them

    def engine_due(self, full: bool) -> bool:
        # The engine is asked (one process on the worker) on the first full check and on
        # every ENGINE_EVERY-th after it: engines are installed far more rarely than
        # kernels change.
        return full and self.fulls % ENGINE_EVERY == 0

    def free_mb(self) -> float | None:
        return min((d["free_mb"] for d in self.disks), default=None)

    def remember(self, facts: dict[str, Any], *, full: bool, disk: bool) -> None:
        if full:
            self.static = {k: facts[k] for k in probe.STATIC_FACTS if k in facts}
            self.checks = 0 if self.started else self.phase % STATIC_REFRESH_EVERY
            self.fulls += 1
        if disk:
            self.disks = facts.get("disks", [])
            self.since_disk = 0 if self.started else self.phase % probe.DISK_EVERY
        self.started = True
        self.checks += 1
        self.since_disk += 1


class HealthChecker:
    def __init__(self, store: Store, reach: Reach, bus: EventBus) -> None:
        self.store = store
        self.reach = reach
        self.bus = bus
        self._inflight: dict[int, asyncio.Task[Outcome]] = {}
        # What each running check started from: its endpoint and the policy then.
        self._inflight_basis: dict[int, tuple[Endpoint, Policy]] = {}
        self._limit = asyncio.Semaphore(MAX_CHECKS_IN_FLIGHT)
        self._pending: list[Outcome] = []
        self._flush_lock = asyncio.Lock()
        self._memory: dict[int, _Remembered] = {}
        self._due: dict[int, float] = {}
        self._failures: dict[int, int] = {}  # checks in a row that could not reach a worker
        self._never_checked: set[int] = set()
        # Whether this server checks a worker, when several share the store (nodes.py):
        # the others check the rest. Those it took over last round, to check soon.
        self.owns: Callable[[str], bool] = lambda _name: True
        self._owned: set[int] | None = None
        self._policy: Policy = fleet.get_policy(store)
        self._wake = asyncio.Event()
        self._targets: list[Target] | None = None
        self._targets_read = 0.0
        self.listeners: list[Callable[[], None]] = []  # told after results are stored
        # Told the names of the workers whose results were stored, and when a check
        # pinned a host key (the fan-out: the other nodes reach them anew too).
        self.recorded: Callable[[list[str]], None] = lambda _names: None
        self.observers: list[Callable[[Outcome], None]] = []  # told each check's outcome
        # Told (worker as published, its status before) when a check changes its status.
        self.turned: list[Callable[[dict[str, Any], str | None], None]] = []
        self.pinned: Callable[[], None] = lambda: None
        # Told when a result changed some worker's health (not only its latest check).
        self.health_listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------ targets

    def invalidate(self) -> None:
        """Workers changed: the schedule re-reads them before its next round."""
        self._targets = None
        self._wake.set()

    def _targets_stale(self) -> bool:
        # The schedule runs twice a second; re-reading every worker each time would make
        # a large fleet's store the busiest part of an idle server.
        return self._targets is None or time.monotonic() - self._targets_read > TARGETS_TTL_S

    async def _refresh_targets(self) -> None:
        # Off the event loop: ten thousand workers take a while to read.
        self._targets = await asyncio.to_thread(self.reach.targets)
        self._targets_read = time.monotonic()

    async def reload_policy(self) -> None:
        self._policy = await asyncio.to_thread(fleet.get_policy, self.store)
        self._due.clear()
        self._wake.set()

    # ------------------------------------------------------------ checking

    async def check_now(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Check the named workers (all when None) now and return their stored state."""
        targets = [t for t in await asyncio.to_thread(self.reach.targets, names) if t.enabled]
        # A check already running that started from other settings (a key trusted since,
        # an address changed, the policy changed) would answer for the old ones: wait for
        # it, then check anew.
        stale = [self._inflight[t.id] for t in targets if t.id in self._inflight
                 and self._inflight_basis.get(t.id) != (t.endpoint, self._policy)]
        if stale:
            await asyncio.gather(*stale, return_exceptions=True)
        await asyncio.gather(*await self._start_all(targets))
        await self.flush()
        latest = self.bus.latest.get("worker")
        if latest is None or "worker" not in self.bus.seeded:
            return await asyncio.to_thread(fleet.list_workers, self.store, names)
        # Every change to a worker is published, so what was published is each one as the
        # store has it now, by name, as list_workers orders them: nothing to read back.
        return [latest[name] for name in sorted(latest if names is None else set(names))
                if name in latest]

    def _start(self, target: Target) -> asyncio.Task[Outcome]:
        task = self._inflight.get(target.id)
        if task is None or task.done():
            # A check already running for this worker is joined, never duplicated.
            task = asyncio.create_task(self._check(target))
            self._inflight[target.id] = task
            self._inflight_basis[target.id] = (target.endpoint, self._policy)
            task.add_done_callback(self._record_done)
            task.add_done_callback(lambda _t, wid=target.id: self._inflight.pop(wid, None))
        return task

    async def _check(self, target: Target) -> Outcome:
        async with self._limit:
            policy = self._policy
            memory = self._memory.get(target.id)
            if memory is None:
                memory = self._memory[target.id] = _Remembered(phase=target.id)
            full = not memory.static or memory.checks >= STATIC_REFRESH_EVERY
            disk = full or probe.disk_due(memory.since_disk, memory.free_mb(), policy)
            engine = memory.engine_due(full)
            script = probe.script(target.work_dir, full=full, disk=disk, engine=engine,
                                   custom_script=policy.custom_script,
                                   custom_timeout_s=probe.custom_limit(policy.timeout_s))
            try:
                result = await self.reach.check(target, script, policy.timeout_s)
            except HostKeyRefused as exc:
                return Outcome(target.id, target.name, UNAVAILABLE, str(exc), {}, None, None,
                               presented_host_key=exc.presented_host_key,
                               key_changed=exc.changed)
            except SSHFailure as exc:
                return Outcome(target.id, target.name, UNAVAILABLE, str(exc), {}, None, None,
                               unreachable=True)
            except Exception as exc:  # a bug must not stop the scheduler; say what happened
                log.exception("health check of %s failed", target.name)
                return Outcome(target.id, target.name, UNAVAILABLE,
                               f"internal error during the check: {exc}", {}, None, None)
            carried = {} if full else dict(memory.static)
            if full and not engine and "container_engine" in memory.static:
                carried["container_engine"] = memory.static["container_engine"]
            if not disk and memory.disks:
                carried["disks"] = memory.disks
            verdict = probe.judge(result.exit_status, result.stdout, result.stderr, policy,
                                   static=carried)
            memory.remember(verdict.facts, full=full, disk=disk)
            return Outcome(
                target.id, target.name, verdict.status, verdict.reason, verdict.facts,
                round(result.elapsed_ms, 2),
                round(result.connect_ms, 2) if result.connect_ms is not None else None,
                load1=verdict.load1, disk_free_mb=verdict.disk_free_mb,
                accepted_key=result.accepted_key, accepted_from=result.accepted_from,
            )

    def _record_done(self, task: asyncio.Task[Outcome]) -> None:
        if not task.cancelled() and task.exception() is None:
            outcome = task.result()
            self._back_off(outcome)
            self._pending.append(outcome)
            for observer in self.observers:
                observer(outcome)

    def _back_off(self, outcome: Outcome) -> None:
        """An unreachable worker is tried less and less often (twice the interval, then
        four times, up to BACKOFF_MAX_S): in an outage of most of a fleet, its failing
        checks must not crowd out the work that matters. A manual check is always at once,
        and the first success brings the normal pace back."""
        if not outcome.unreachable:
            self._failures.pop(outcome.worker_id, None)
            # A check just made (a manual one too) is this worker's check for the
            # interval: one already scheduled would ask again at once, and a worker
            # that went down since would be found so before any step says it.
            if outcome.worker_id in self._due:
                self._never_checked.discard(outcome.worker_id)
                self._due[outcome.worker_id] = time.monotonic() + \
                    self._policy.interval_s * random.uniform(0.9, 1.1)
            return
        failures = self._failures.get(outcome.worker_id, 0) + 1
        self._failures[outcome.worker_id] = failures
        interval = self._policy.interval_s
        delay = min(max(interval, BACKOFF_MAX_S), interval * 2 ** failures)
        self._due[outcome.worker_id] = time.monotonic() + delay * random.uniform(0.75, 1.25)
        if delay > interval:
            outcome.reason += f" (unreachable {failures} times in a row: tried again in " \
                              f"about {_span(delay)})"

    # ------------------------------------------------------------ recording

    async def flush(self) -> None:
        """Write every finished check to the store in one transaction, then publish."""
        async with self._flush_lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            now = utcnow()
            try:
                if await asyncio.to_thread(results.write, self.store, batch,
                                           self._policy.history_size, now):
                    self._targets = None  # a pinned key changes how a worker is reached
                    self.pinned()
            except Exception:
                # Kept for the next try (a full disk, a locked store): only the latest
                # result of each worker matters, so what is held stays one per worker.
                latest = {o.worker_id: o for o in batch + self._pending}
                self._pending = list(latest.values())
                raise
            # What changed is known: the new state of most workers is made from the one
            # last published, rather than read back whole for every result.
            retained = self.bus.latest.get("worker", {})
            unsure = []
            health_changed = False
            turned: dict[str, str | None] = {}  # whose status changed, from what
            for index, outcome in enumerate(batch):
                if index % PUBLISH_BATCH == PUBLISH_BATCH - 1:
                    await asyncio.sleep(0)  # a sweep's thousands, a few hundred at a time
                previous = retained.get(outcome.name)
                if previous is None or previous.get("check_status") != outcome.status:
                    health_changed = True
                    turned[outcome.name] = previous.get("check_status") if previous else None
                updated = results.published_state(previous, outcome, now)
                if updated is None:
                    unsure.append(outcome.name)
                else:
                    self.bus.publish("worker", outcome.name, updated)
            if unsure:
                for worker in await asyncio.to_thread(fleet.list_workers, self.store, unsure):
                    self.bus.publish("worker", worker["name"], worker)
            self.recorded([outcome.name for outcome in batch])
            if self.turned:
                latest = self.bus.latest.get("worker", {})
                for name, before in turned.items():
                    if name in latest:
                        for listener in self.turned:
                            listener(latest[name], before)
        for listener in self.listeners:
            listener()
        if health_changed:
            for listener in self.health_listeners:
                listener()

    # ------------------------------------------------------------ schedule

    async def run_schedule(self) -> None:
        """Check every enabled worker once per interval, spread with jitter, forever."""
        flusher = asyncio.create_task(self._flush_forever())
        try:
            while True:
                if self._targets_stale():
                    await self._refresh_targets()
                if self._targets is not None:  # not invalidated while it was read
                    await self._start_all(self._due_now(self._targets))
                self._wake.clear()
                await woken(self._wake, 0.5)
        finally:
            flusher.cancel()

    def wake(self) -> None:
        self._wake.set()

    def _due_now(self, targets: list[Target]) -> list[Target]:
        """The workers whose check is due, their next one scheduled."""
        policy = self._policy
        starting: list[Target] = []
        new = self._never_checked
        now = time.monotonic()
        live = {t.id for t in targets}
        for worker_id in list(self._due):
            if worker_id not in live:
                self._due.pop(worker_id)
                self._memory.pop(worker_id, None)
                self._failures.pop(worker_id, None)
        owned = {t.id for t in targets if t.enabled and self.owns(t.name)}
        gained = owned - self._owned if self._owned is not None else set()
        self._owned = owned
        for target in targets:
            if target.id not in owned:
                continue
            due = self._due.get(target.id)
            if target.id in gained and due is not None:
                # Taken over from a node that left: its last check may be a while ago.
                due = self._due[target.id] = min(due, now + random.uniform(0, 2.0))
            if due is None:
                # First sight: never-checked workers go within a few seconds, the rest
                # where their last check says, each spread so no sweep fires in one burst.
                spread = min(policy.interval_s, 2.0) if target.checked_at_epoch is None \
                    else policy.interval_s
                due = now + random.uniform(0, spread)
                if target.checked_at_epoch is not None:
                    age = time.time() - target.checked_at_epoch
                    due = min(due, now + max(0.0, policy.interval_s - age))
                else:
                    new.add(target.id)
                self._due[target.id] = due
            if due <= now and target.id not in self._inflight:
                # A fleet added at once is checked at once; its next checks are spread
                # over the interval, or they would keep coming in one burst forever.
                spread = (0.5, 1.5) if target.id in new else (0.9, 1.1)
                new.discard(target.id)
                self._due[target.id] = now + policy.interval_s * random.uniform(*spread)
                starting.append(target)
        return starting

    async def _start_all(self, targets: list[Target]) -> list[asyncio.Task[Outcome]]:
        """Start checks a batch at a time: a thousand tasks made in one go would hold the
        event loop for a good part of a second, and every console with it."""
        tasks = []
        for index, target in enumerate(targets):
            tasks.append(self._start(target))
            if index % START_BATCH == START_BATCH - 1:
                await asyncio.sleep(0)
        return tasks

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception:
                pass_failed(log, "could not record health checks; will retry")


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


