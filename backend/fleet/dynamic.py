"""Dynamic workers: a pool with a provisioner makes a worker when a step has waited too
long for a slot, and destroys it once it has been idle long enough.

The provisioner is two commands on the server's host. `create NAME` prints one JSON
object (host, port, user, key, host_key); the worker is registered with that host key
pinned (the provisioner's word, never trust on first use), checked, and given the
work. `destroy NAME` gives it back. Each life is a new worker with a new name: an
address the provisioner hands out again is never mistaken for the worker that had it.

Each command runs in a session of its own and is killed, with everything it started,
after the pool's time limit. A failure is reported on the pool and in the audit log,
and the pool waits longer after each failure in a row before trying again; the queue
goes on with the workers there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import secrets
import shlex
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from backend import fleet
from backend.errors import WorkdeckError
from backend.events import woken
from backend.fleet import provisioners
from backend.fleet.provisioners import Plan
from backend.health.checker import HealthChecker
from backend.runs.leases import Leases
from backend.store.db import Store, pass_failed
from backend.store.models import HEALTHY, UNAVAILABLE, UNHEALTHY, StepWait, utcnow

log = logging.getLogger(__name__)

PASS_S = 1.0  # decide again this often, and whenever the queue or the leases change
OUTPUT_LIMIT = 64 * 1024  # of a command's output kept; a provisioner has little to say
BACKOFF_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)  # after 1, 2, ... failures in a row
FIRST_CHECK_S = 10.0  # a new worker's SSH server may take a moment to answer
BROKEN_S = 30.0  # a dynamic worker unavailable or unhealthy this long is destroyed


class ProvisionFailed(Exception):
    """A provisioner's command failed; the message is the sentence to show."""


@dataclass
class _PoolState:
    creating: int = 0
    # Made and registered, their first check not yet done: neither idle nor counted
    # twice (they are still `creating`).
    fresh: set[str] = field(default_factory=set)
    destroying: set[str] = field(default_factory=set)
    made: deque[float] = field(default_factory=deque)  # when each creation started
    failures: int = 0  # in a row
    retry_at: float = 0.0
    idle_since: dict[str, float] = field(default_factory=dict)
    state: str = ""  # as last written to the store


Changed = Callable[..., Awaitable[Any]]


class DynamicWorkers:
    """Runs every pool's provisioner."""

    def __init__(self, store: Store, leases: Leases, checker: HealthChecker,
                 changed: Changed) -> None:
        self.store = store
        self.leases = leases
        self.checker = checker
        self.changed = changed  # Backend.changed: publish and wake what depends on it
        self._wake = asyncio.Event()
        self._pools: dict[str, _PoolState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Whether this node makes and destroys the workers (one of those sharing the
        # store does, the leader: two would each make one for the same waiting step).
        self.leads: Callable[[], bool] = lambda: True

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        try:
            while True:
                await woken(self._wake, PASS_S)
                self._wake.clear()
                try:
                    await self.decide()
                except Exception:  # one bad pass must not stop dynamic workers for good
                    pass_failed(log, "deciding on dynamic workers failed")
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------ deciding

    async def decide(self) -> None:
        if not self.leads():
            return
        plans = await asyncio.to_thread(provisioners.plans, self.store)
        for plan in plans:
            pool = self._pools.setdefault(plan.pool, _PoolState())
            workers, free, waiting = await asyncio.to_thread(self._read, plan.pool)
            await self._decide(plan, pool, workers, free, waiting)
        for gone in set(self._pools) - {plan.pool for plan in plans}:
            if not (self._pools[gone].creating or self._pools[gone].destroying):
                del self._pools[gone]

    def _read(self, pool: str) -> tuple[list[dict[str, Any]], int, list[StepWait]]:
        """The pool's dynamic workers, its free slots now (on any member), and the steps
        waiting for it (whichever node runs them)."""
        figure = fleet.pool_figures(self.store, name=pool).get(pool) or {}
        return (provisioners.dynamic_workers(self.store, pool),
                max(0, figure.get("capacity", 0) - figure.get("leased", 0)),
                self.leases.waits(pool))

    async def _decide(self, plan: Plan, pool: _PoolState, workers: list[dict[str, Any]],
                      free: int, queued: list[StepWait]) -> None:
        now = time.monotonic()
        while pool.made and now - pool.made[0] >= 60:
            pool.made.popleft()
        alive = [w for w in workers if w["name"] not in pool.destroying | pool.fresh]
        now_at = utcnow()
        waiting = [w for w in queued if not w.worker]
        overdue = sum((now_at - (w.since if w.since.tzinfo else w.since.replace(
            tzinfo=UTC))).total_seconds() >= plan.wait_s for w in waiting)
        # Enough new slots for the steps that waited too long (but those a free slot is
        # about to take), and `min` kept warm; never above `max`, nor faster than
        # `per_minute`, nor before a failure's wait is over.
        wanted = max(math.ceil(max(0, overdue - free) / plan.capacity) - pool.creating,
                     plan.min - len(alive) - pool.creating)
        room = min(plan.max - len(alive) - pool.creating, plan.per_minute - len(pool.made))
        if wanted > 0 and room > 0 and now >= pool.retry_at:
            for _ in range(min(wanted, room)):
                pool.creating += 1
                pool.made.append(now)
                self._spawn(self._create(plan, pool))
        # Idle ones go: those above `max` at once, the rest after `idle_s`, down to `min`.
        over = len(alive) - plan.max
        going = 0
        for worker in sorted(alive, key=lambda w: w["name"]):
            name = worker["name"]
            if worker["leased"] or (waiting and worker["status"] == HEALTHY
                                    and not worker["draining"]):
                pool.idle_since.pop(name, None)  # busy, or about to be
                continue
            idle = now - pool.idle_since.setdefault(name, now)
            broken = worker["status"] in (UNAVAILABLE, UNHEALTHY)
            if going < over:
                why = f"above the pool's maximum of {plan.max}"
            elif worker["draining"] and now >= pool.retry_at:
                why = "drained"  # by an operator, or a destroy that failed and is tried again
            elif broken and idle >= min(plan.idle_s, BROKEN_S):
                # Of no use, and in the way of a new one under `max` (or `min`).
                why = f"{worker['status']} for {idle:.0f} s: {worker['reason']}"
            elif idle >= plan.idle_s and len(alive) - going > plan.min:
                why = f"idle for {idle:.0f} s"
            else:
                continue
            going += 1
            pool.destroying.add(name)
            self._spawn(self._destroy(plan, pool, name, why))
        await self._show(plan.pool, pool, now)

    async def _show(self, pool_name: str, pool: _PoolState, now: float,
                    note: str | None = None, action: str | None = None,
                    target: str = "") -> None:
        """Write what the provisioner is doing when it changed (and `note`, when something
        happened), and tell the consoles."""
        state = ("creating" if pool.creating else "destroying" if pool.destroying
                 else "failing" if now < pool.retry_at else "ready")
        if state == pool.state and note is None:
            return
        pool.state = state
        await asyncio.to_thread(provisioners.record, self.store, pool_name, state, note,
                                action, target)
        await self.changed("pool", [pool_name])

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _failed(self, plan: Plan, pool: _PoolState, sentence: str, target: str) -> None:
        pool.failures += 1
        wait = BACKOFF_S[min(pool.failures, len(BACKOFF_S)) - 1]
        pool.retry_at = time.monotonic() + wait
        log.warning("provisioner of %s: %s", plan.pool, sentence)
        await self._show(plan.pool, pool, time.monotonic(),
                         f"{sentence}; next attempt in {wait:g} s", "provisioner.fail", target)

    # ------------------------------------------------------------ making one

    async def _create(self, plan: Plan, pool: _PoolState) -> None:
        name = new_name(plan.pool)
        started = time.monotonic()
        said: str | None = None  # what happened, once it is over
        try:
            await self._show(plan.pool, pool, started)
            try:
                printed = await run_command(plan.create, name, plan, "create")
                try:
                    made = json.loads(printed)
                except ValueError:
                    raise ProvisionFailed("its output is not one JSON object") from None
                fingerprint = await asyncio.to_thread(provisioners.add_dynamic_worker,
                                                      self.store, plan.pool, name, made,
                                                      plan.capacity)
            except (ProvisionFailed, WorkdeckError) as exc:
                await self._failed(plan, pool, f"making {name} failed: {exc}", name)
                return
            pool.fresh.add(name)
            await self.changed("worker", [name])
            checked = await self._first_check(name, started + max(FIRST_CHECK_S,
                                                                  plan.timeout_s))
            pool.fresh.discard(name)
            if checked.get("status") != HEALTHY:
                found = (f"its first check found it {checked.get('status')}: "
                         f"{checked.get('reason') or 'no reason given'}")
                await self._failed(plan, pool, f"{name} was made at {made.get('host')}, but "
                                   + found, name)
                pool.destroying.add(name)
                self._spawn(self._destroy(plan, pool, name, found))
                return
            pool.failures, pool.retry_at = 0, 0.0
            self.leases.wake()
            said = (f"made {name} at {checked['host']}:{checked['port']} in "
                    f"{time.monotonic() - started:.1f} s (host key {fingerprint}, from the "
                    "provisioner)")
        finally:
            pool.creating -= 1
            pool.fresh.discard(name)
            self.wake()
            with contextlib.suppress(Exception):
                await self._show(plan.pool, pool, time.monotonic(), said)

    async def _first_check(self, name: str, until: float) -> dict[str, Any]:
        """Check a new worker until it is healthy (its SSH server may still be starting,
        its first result not yet published), but never past a refused host key nor
        `until`."""
        while True:
            [checked] = await self.checker.check_now([name]) or [{}]
            refused = "host key" in (checked.get("reason") or "").lower()
            if checked.get("status") == HEALTHY or refused or time.monotonic() >= until:
                return checked
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------ giving one back

    async def _destroy(self, plan: Plan, pool: _PoolState, name: str, why: str) -> None:
        actor = f"provisioner of {plan.pool}"
        said: str | None = None
        try:
            await self._show(plan.pool, pool, time.monotonic())
            drained = await asyncio.to_thread(fleet.set_draining, self.store, name, True,
                                              actor)
            await self.changed("worker", [name])
            if drained["leased"]:
                # A step took it between the decision and the drain: it stays.
                await asyncio.to_thread(fleet.set_draining, self.store, name, False, actor)
                await self.changed("worker", [name])
                return
            try:
                await run_command(plan.destroy, name, plan, "destroy")
            except ProvisionFailed as exc:
                await self._failed(plan, pool, f"destroying {name} failed: {exc}; it stays "
                                   "drained and is tried again", name)
                return
            await asyncio.to_thread(fleet.remove_worker, self.store, name, actor,
                                    f"destroyed: {why}")
            await self.changed("worker", [name])
            said = f"destroyed {name} ({why})"
        except WorkdeckError as exc:
            log.warning("provisioner of %s: destroying %s: %s", plan.pool, name, exc)
        finally:
            pool.destroying.discard(name)
            pool.idle_since.pop(name, None)
            self.wake()
            with contextlib.suppress(Exception):
                await self._show(plan.pool, pool, time.monotonic(), said)


def new_name(pool: str) -> str:
    """A worker name no earlier life had: the start of the pool's name in lower case
    ("Web Worker Pool" gives "web"), short enough to read whole in a table, and a random
    part."""
    slug = re.sub(r"[^a-z0-9]+", "-", pool.lower()).strip("-")
    slug = re.sub(r"(-worker)?-pool$", "", slug)
    while len(slug) > 14 and "-" in slug:
        slug = slug.rsplit("-", 1)[0]
    return f"{slug[:14].strip('-') or 'pool'}-{secrets.token_hex(3)[:5]}"


async def run_command(command: str, name: str, plan: Plan, what: str) -> str:
    """Run one of the provisioner's commands with the worker's name as its last argument;
    its standard output, or ProvisionFailed saying why not."""
    env = {**os.environ, "WORKDECK_POOL": plan.pool, "WORKDECK_WORKER": name}
    process = await asyncio.create_subprocess_shell(
        f"{command} {shlex.quote(name)}", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        start_new_session=True)
    try:
        async with asyncio.timeout(plan.timeout_s):
            out, err = await asyncio.gather(_read(process.stdout), _read(process.stderr))
            status = await process.wait()
    except BaseException as exc:
        # Hung or cancelled: it goes, with everything it started (what it left running in
        # the background after a clean exit is its own).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(process.wait())
        if isinstance(exc, TimeoutError):
            raise ProvisionFailed(f"its {what} command did not finish within "
                                  f"{plan.timeout_s:g} s and was stopped") from None
        raise
    if status != 0:
        last = next((line for line in reversed(err.decode("utf-8", "replace").splitlines())
                     if line.strip()), "")
        raise ProvisionFailed(f"its {what} command exited with status {status}"
                              + (f": {last.strip()}" if last else ""))
    return out.decode("utf-8", "replace")


async def _read(stream: asyncio.StreamReader | None) -> bytes:
    kept = b""
    while stream is not None and (chunk := await stream.read(65536)):
        if len(kept) < OUTPUT_LIMIT:
            kept += chunk[:OUTPUT_LIMIT - len(kept)]
    return kept
