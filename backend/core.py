"""The Backend: every part one running server holds, and how a change reaches them.

Routes change the store, then say so with one call, `backend.changed(kind, names)`:
it publishes the new state of what changed to every console and wakes each part whose
work depends on that kind of thing. What depends on what is written once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from backend import __version__, fleet
from backend.events import EventBus, woken
from backend.fanout import Fanout
from backend.fleet import advisor
from backend.fleet.dynamic import DynamicWorkers
from backend.fleet.usage import Usage
from backend.health.checker import HealthChecker
from backend.metrics import Metrics
from backend.nodes import Registry, default_name
from backend.nodes import timing as nodes_timing
from backend.notify.delivery import Notifier, Told
from backend.people.access import Access
from backend.runs import launch, runbooks
from backend.runs.engine import RunEngine
from backend.runs.leases import Leases
from backend.runs.loghub import LogHub
from backend.runs.orphans import Reaper
from backend.runs.rerun import run_notice
from backend.runs.schedules import Scheduler
from backend.runs.vault import Vault
from backend.store import retention
from backend.store.db import Store, pass_failed
from backend.store.models import UNAVAILABLE, Schedule
from backend.transport.connections import ConnectionPool
from backend.transport.reach import Reach
from wire.datadir import DataDir
from wire.runs import LaunchRequest

log = logging.getLogger("workdeck.server")

ADVICE_EVERY_S = 30.0  # health changes the advisor's findings too, without telling it
ADVICE_MIN_GAP_S = 10.0  # at most one pass this often: it reads the whole fleet
CATCH_UP_RUNS = 50  # the newest runs compared with what consoles were shown, at a catch-up
STORE_WATCH_S = 0.5  # how soon a console hears that the store refuses writes, or takes them

# The kinds of thing a route may change (the push stream's topics, plus two that have
# no row of their own to push).
KINDS = ("worker", "pool", "runbook", "environment", "settings", "policy", "people",
         "schedule", "notification")


class Backend:
    """Everything one running server holds, shared by the API routes."""

    def __init__(self, data_dir: DataDir, *, listen: str, store: Store,
                 node: str | None = None) -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.store = store
        # This server among those using the store: its name, heartbeat, draining or not.
        self.nodes = Registry(store, node or default_name(), listen)
        self.bus = EventBus(retain=("worker",))
        self.connections = ConnectionPool()
        # Checks, steps and the reaper reach workers one way.
        self.reach = Reach(store, self.connections)
        self.checker = HealthChecker(store, self.reach, self.bus)
        self.hub = LogHub()
        self.leases = Leases(store)
        # What this node changes is told to the others, and theirs heard (fanout.py).
        self.fanout = Fanout(store, self.nodes.name)
        self.vault = Vault(data_dir.secret_key)
        self.runs = RunEngine(store, self.reach, self.bus, self.vault,
                              self.hub, self.checker, self.leases, self.fanout)
        self.reaper = Reaper(store, self.leases, self.bus, self.reach.transport_to,
                             self.runs.publish_worker)
        self.usage = Usage(store, self.leases, self.bus)
        self.dynamic = DynamicWorkers(store, self.leases, self.checker, self.changed)
        self.access = Access(store)  # who is asking, and what they may do
        self.scheduler = Scheduler(store, self.launch_scheduled)
        self.metrics = Metrics(self)
        # Told of what happens; the leader posts to the receivers (backend/notify/).
        self.notifier = Notifier(store, self.vault, lambda: self.nodes.name,
                                 partial(run_notice, store), self._pool_figures)
        self.runs.finish_listeners.append(lambda run_id: self.notifier.tell(Told("run",
                                                                                 run_id)))
        self.runs.wait_listeners.append(lambda run_id: self.notifier.tell(Told("waiting",
                                                                               run_id)))
        self.checker.turned.append(self._worker_turned)
        self.checker.observers.append(self.metrics.checked)
        self.leases.wait_listeners.append(self.metrics.waited)
        self.runs.finish_listeners.append(self.metrics.run_finished)
        # The health checks are shared with the other live nodes (nodes.py); each run is
        # executed by one (runs/claims.py), the leader taking over what a gone one left.
        self.checker.owns = self.nodes.mine
        self.nodes.listeners.append(self.checker.wake)
        self.nodes.runs_executing = self.runs.under_way
        self.runs.node = self.reaper.node = self.leases.node = self.nodes.name
        self.leases.live = lambda: self.nodes.live if len(self.nodes.live) > 1 else None
        self.runs.takes_runs = lambda: not self.nodes.draining
        self.nodes.take_over = self.runs.take_over
        self.nodes.on_lost = self.runs.abandon
        self.usage.leads = self.dynamic.leads = self.scheduler.leads = self.nodes.leads
        self.notifier.leads = self.nodes.leads
        self._hear_the_other_nodes()
        self.nodes.workers_checked = lambda: sum(
            1 for name, worker in list(self.bus.latest.get("worker", {}).items())
            if worker.get("status") != "disabled" and self.nodes.mine(name))
        # Parts that change what others see, without a route in between: a lease turned
        # orphan wants the reaper; new health results may free a slot for a queued step,
        # and change the pools and the advisor's findings.
        self.leases.orphan_listeners.append(self.reaper.wake)
        self.leases.listeners.append(self.dynamic.wake)  # a step queued: a worker to make?
        self.checker.listeners.append(self.leases.wake)
        self.checker.health_listeners.append(self.advice_due)
        self.checker.health_listeners.append(self.usage.figures.invalidate)
        # What depends on each kind of change a route makes.
        self._dependents: dict[str, list[Callable[[], object]]] = {
            # How each worker is reached and checked, the pools' figures, which worker a
            # queued step may take, the findings about names, pools and capacity.
            "worker": [self.checker.invalidate, self.usage.figures.reread, self.leases.wake,
                       self.advice_due],
            "pool": [self.usage.figures.reread, self.usage.wake, self.leases.wake,
                     self.advice_due, self.dynamic.wake],
            "runbook": [],
            "environment": [],
            "settings": [self.advice_due],
            "policy": [self.checker.reload_policy, self.advice_due],
            # Who may do what: tokens and grants are read again at the next request.
            "people": [self.access.invalidate],
            "schedule": [self.scheduler.wake],
            "notification": [self.notifier.changed],
        }
        self.started = time.time()
        self.stop_callback: Callable[[], None] | None = None
        self.extra_tasks: list[Callable[[], Awaitable[None]]] = []
        self.token: str | None = None  # the data directory's api-token, over TCP
        self.tls_fingerprint: str | None = None  # of the certificate served over TCP
        self.socket_group: str | None = None  # whose members may use the socket too
        self.host = socket.gethostname()
        self._advice_wake = asyncio.Event()
        # The advisor's last count, for snapshots (None until it has counted once).
        self.advice_counts: dict[str, int] | None = None
        self.data_dir_bytes = 0
        self.disk_free_bytes: int | None = None

    # ------------------------------------------------------------ changes

    async def changed(self, kind: str, names: Iterable[str] | None = None, *,
                      check: bool = False, told: bool = False) -> list[dict[str, Any]]:
        """Things of `kind` changed in the store (`names`: which ones; None: any of them).

        Wakes every part that depends on that kind, and publishes the current state of
        each named thing to every console, or its removal when it is gone. Answers the
        current state, in the order of `names`. `check`: check the named workers now, in
        the background. `told`: another node made the change and said so (it is not
        told to the others again).
        """
        if kind not in self._dependents:
            raise ValueError(f"unknown kind of change {kind!r}")
        if not told:
            self.fanout.tell(f"changed.{kind}", ["*"] if names is None else names)
        for dependent in self._dependents[kind]:
            if inspect.isawaitable(woken := dependent()):
                await woken
        wanted = None if names is None else list(dict.fromkeys(names))
        current = await asyncio.to_thread(self._current, kind, wanted)
        if current is None:  # settings, policy: nothing of their own to push
            return []
        for name, data in current.items():
            self.bus.publish(kind, name, data)
        gone = wanted if wanted is not None else list(self.bus.latest.get(kind, {}))
        for name in gone:
            if name not in current:
                self.bus.publish(f"{kind}.removed", name)
                if kind == "worker":
                    await self.connections.drop(name)
        if kind == "worker" and check and wanted:
            task = asyncio.create_task(self.checker.check_now(wanted))
            task.add_done_callback(_log_failure)
        if wanted is None:
            return list(current.values())
        return [current[name] for name in wanted if name in current]

    def _current(self, kind: str, names: list[str] | None) -> dict[str, dict[str, Any]] | None:
        """The current state of the named things of `kind` (all when None), by name."""
        if kind == "worker":
            found = fleet.list_workers(self.store, names)
        elif kind == "pool":
            queued = self.leases.queued_by_pool()
            found = ([p for name in names for p in fleet.list_pools(self.store, queued, name)]
                     if names is not None and len(names) < 8
                     else fleet.list_pools(self.store, queued))
        elif kind == "runbook":
            found = runbooks.list_all(self.store)
        elif kind == "environment":
            found = launch.environment_rows(self.store)
        elif kind == "people":
            # Only that they changed: each console asks for what it may see of them.
            return {"people": {}}
        else:
            return None
        by_name = {item["name"]: item for item in found}
        if names is None:
            return by_name
        return {name: by_name[name] for name in names if name in by_name}

    # ------------------------------------------------------------ schedules

    async def launch_scheduled(self, schedule: Schedule, cause: str) -> int:
        """A schedule's time came: launch as the person who made it, if their grants
        allow it now, on this node unless it drains (then another claims the run)."""
        who = await self.access.acting(schedule.person, f"schedule {schedule.name}")
        who.require("launch", schedule.environment)
        variables = {**json.loads(schedule.variables), **self.vault.open(schedule.secrets)}
        run = await self.runs.launch(
            LaunchRequest(runbook=schedule.runbook, environment=schedule.environment,
                          variables=variables), who.actor, who.name, cause=cause,
            schedule=schedule.name)
        return int(run["id"])

    # ------------------------------------------------------------ the other nodes

    def _hear_the_other_nodes(self) -> None:
        """What this node tells the others, and what it does on hearing them."""
        tell = self.fanout.tell
        self.hub.told = lambda run_id: tell("log", [run_id])
        self.checker.recorded = lambda names: tell("health", names)
        # A step must not be reached with a key pinned elsewhere while this node's checks
        # still go the old way (a new connection would close the step's).
        self.checker.pinned = lambda: tell("pinned")
        self.leases.listeners.append(lambda: tell("usage"))
        handlers = self.fanout.handlers
        handlers["run"] = self._heard_of_runs
        handlers["log"] = self._heard_of_logs
        handlers["health"] = self._heard_of_health
        handlers["request"] = handlers["claim"] = self._heard_of_work
        handlers["usage"] = self._heard_of_usage
        handlers["pinned"] = self._heard_of_pinned
        handlers["notify"] = self._heard_of_deliveries
        self.notifier.stored = lambda: tell("notify")
        for kind in KINDS:
            handlers[f"changed.{kind}"] = partial(self._heard_of_change, kind)
        self.fanout.catch_up = self._catch_up

    async def _heard_of_runs(self, ids: set[str]) -> None:
        for run_id in sorted(int(i) for i in ids if i.isdigit()):
            await self.runs._publish(run_id, tell=False)
            self.hub.notify(run_id)

    async def _heard_of_logs(self, ids: set[str]) -> None:
        for run_id in ids:
            if run_id.isdigit():
                self.hub.notify(int(run_id))

    async def _heard_of_health(self, names: set[str]) -> None:
        wanted = None if "*" in names else sorted(names)
        latest = self.bus.latest.get("worker", {})
        for worker in await asyncio.to_thread(fleet.list_workers, self.store, wanted):
            if latest.get(worker["name"]) != worker:
                self.bus.publish("worker", worker["name"], worker)
        # As this node's own results do: a slot may be free, the figures changed.
        self.leases.wake()
        self.usage.figures.invalidate()
        self.advice_due()

    async def _heard_of_work(self, _keys: set[str]) -> None:
        self.runs.claim_wake()

    async def _heard_of_deliveries(self, _keys: set[str]) -> None:
        self.notifier.wake()  # another node stored deliveries: the leader posts them

    def _worker_turned(self, worker: dict[str, Any], before: str | None) -> None:
        """A check changed a worker's status (on the one node that checks it): unavailable
        now is told to the notifications, and its pools are looked at (one may be short
        of healthy workers now). A first sight after a start says nothing new."""
        if before is None or not worker.get("enabled", True):
            return
        if worker.get("check_status") == UNAVAILABLE and before != UNAVAILABLE:
            self.notifier.tell(Told("worker", worker["name"], worker))
        if worker.get("pools"):
            self.notifier.tell(Told("pools", tuple(worker["pools"])))

    def _pool_figures(self) -> dict[str, dict[str, Any]]:
        """Every pool's figures now, read exact (in a thread)."""
        return self.usage.figures.current(self.leases.queued_by_pool(), exact=True)

    async def _heard_of_pinned(self, _keys: set[str]) -> None:
        self.checker.invalidate()

    async def _heard_of_usage(self, _keys: set[str]) -> None:
        self.usage.wake()
        self.leases.serve_soon()  # a slot may have come free, or a waiter gone ahead

    async def _heard_of_change(self, kind: str, names: set[str]) -> None:
        await self.changed(kind, None if "*" in names else sorted(names), told=True)

    async def _catch_up(self) -> None:
        """What the other nodes did that this node may not have heard of (a message can
        be lost): the workers others check and the newest runs, published where they
        differ from what this node's consoles were shown."""
        latest = self.bus.latest.get("worker", {})
        for worker in await asyncio.to_thread(fleet.list_workers, self.store):
            name = worker["name"]
            if not self.nodes.mine(name) and latest.get(name) != worker:
                self.bus.publish("worker", name, worker)
        shown = self.runs.shown_recent()
        if shown is not None:
            for run in await asyncio.to_thread(self.runs.list, CATCH_UP_RUNS):
                if shown.get(run["id"]) != run:
                    await self.runs._publish(run["id"], tell=False)
                    self.hub.notify(run["id"])
        self.usage.wake()

    # ------------------------------------------------------------ status and settings

    def status(self) -> dict[str, Any]:
        self.measure_data_dir()  # a few files and one statvfs: cheap enough to do here
        return {
            "version": __version__,
            "pid": os.getpid(),
            "data_dir": str(self.data_dir.root),
            "listen": self.listen,
            "started_at": self.started,
            "uptime_s": round(time.time() - self.started, 1),
            "connections": len(self.connections),
            "subscribers": self.bus.subscriber_count,
            # Why the store refuses writes now (e.g. "the data directory is full").
            "store_fault": self.store.fault,
            "store": {"kind": self.store.dialect, "where": self.store.where},
            "node": self.nodes.name,
            "data_dir_bytes": self.data_dir_bytes,
            "disk_free_bytes": self.disk_free_bytes,
            "tls_fingerprint": self.tls_fingerprint,
            "socket_group": self.socket_group,
            "host": self.host,
        }

    def measure_data_dir(self) -> None:
        """The data directory's size and the free space beside it."""
        total = 0
        for entry in os.scandir(self.data_dir.root):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        self.data_dir_bytes = total
        with contextlib.suppress(OSError):
            stats = os.statvfs(self.data_dir.root)
            self.disk_free_bytes = stats.f_bavail * stats.f_frsize

    async def watch_store_forever(self) -> None:
        """Tell every console when the store starts or stops refusing writes."""
        said: str | None = None
        while True:
            if self.store.fault != said:
                said = self.store.fault
                self.bus.publish("server", "status", self.status())
            await asyncio.sleep(STORE_WATCH_S)

    def settings(self) -> dict[str, Any]:
        with self.store.read() as session:
            builtin = fleet.get_setting(session, "builtin_worker", True)
        kept = retention.get(self.store)
        heartbeat_s, lease_s = nodes_timing(self.store)
        return {"builtin_worker": builtin, **advisor.naming(self.store),
                "keep_runs_days": kept.runs_days, "keep_runs_gb": kept.runs_gb,
                "keep_audit_days": kept.audit_days, "node_heartbeat_s": heartbeat_s,
                "node_lease_s": lease_s}

    # ------------------------------------------------------------ the advisor's count

    def advice_due(self) -> None:
        """The fleet changed in a way the advisor looks at: count its findings again soon."""
        self._advice_wake.set()

    async def count_advice_forever(self) -> None:
        """Keep every console's count of the advisor's findings current."""
        last: dict[str, int] | None = None
        while True:
            await woken(self._advice_wake, ADVICE_EVERY_S)
            self._advice_wake.clear()
            try:
                counts = advisor.summary(await asyncio.to_thread(advisor.advise, self.store))
            except Exception:  # the count must not stop for good over one bad pass
                pass_failed(log, "the advisor failed")
                counts = None
            if counts is not None and counts != last:
                self.advice_counts = counts
                self.bus.publish("advice", "fleet", counts)
                last = counts
            await asyncio.sleep(ADVICE_MIN_GAP_S)

    # ------------------------------------------------------------ life

    def forever(self) -> list[Callable[[], Awaitable[None]]]:
        """What runs for as long as the server does."""
        return [self.checker.run_schedule, self.usage.run_forever, self.count_advice_forever,
                self.reaper.run_forever, self.watch_store_forever, self.dynamic.run_forever,
                self.nodes.run_forever, self.runs.claim_forever, self.fanout.run_forever,
                self.scheduler.run_forever, self.notifier.run_forever,
                lambda: retention.prune_forever(self.store, self.nodes.leads),
                *self.extra_tasks]

    def request_stop(self, actor: str) -> None:
        log.info("stop requested by %s", actor)
        if self.stop_callback:
            self.stop_callback()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background check failed: %s", task.exception())
