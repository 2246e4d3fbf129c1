"""The servers using one store ("nodes"): each registers itself and heartbeats, so that
`workdeck nodes` shows which are alive, what each does, and which are draining.

Alive is judged by the database's time: a node whose last heartbeat is older than its
lease (the setting node_lease_s) is lost (it died, or cannot reach the database), one
that said it stopped is stopped. A node that is draining finishes what it runs and takes
no new runs.

The health checks are shared among the live nodes: each worker is checked by the node
that rendezvous hashing gives it (the highest hash of node and worker), so the fleet is
spread evenly, and when a node joins or leaves only the workers that must move do. Each
node learns who is alive at its heartbeat; for as long as two nodes see the membership
differently (a heartbeat at most), a worker may be checked by both, or by neither.

Runs are claimed by one node each (backend/runs/claims.py). When a node is lost, the
live node with the first name (the leader) takes over what it left: its runs are
interrupted (or adopted, when they wait for a decision), what is left of their steps on
the workers is killed, and only then are their slots given back. So that a lost node
that comes back (it was paused, or cut off from the database) cannot write over that,
the takeover marks it lost in the same transaction, and every write a node makes checks
its own mark first (Store.fence): a node found lost stops its stale work, writing
nothing, before it rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from backend import __version__
from backend.errors import Conflict, InvalidInput, NotFound, Unavailable
from backend.fleet import audit, iso
from backend.fleet.settings import get_setting, put_setting
from backend.fleet.validation import free_text
from backend.store.db import Store, pass_failed, retrying
from backend.store.models import Node, Run
from backend.store.sql import database_now

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # the defaults of the settings node_heartbeat_s and node_lease_s
LEASE_S = 15.0  # a node silent for longer is lost

UP, STOPPED, LOST = "up", "stopped", "lost"


class Fenced(Unavailable):
    """This node was found lost and its runs taken over: it writes nothing until it has
    stopped what it ran."""


def timing(store: Store) -> tuple[float, float]:
    """The nodes' heartbeat and lease (settings every node reads at each heartbeat)."""
    with store.read() as session:
        return read_timing(session)


def read_timing(session: Session) -> tuple[float, float]:
    return (float(get_setting(session, "node_heartbeat_s", HEARTBEAT_S)),
            float(get_setting(session, "node_lease_s", LEASE_S)))


def set_timing(store: Store, actor: str, *, heartbeat_s: float | None,
               lease_s: float | None) -> None:
    with store.write() as session:
        current_heartbeat, current_lease = read_timing(session)
        heartbeat_s = current_heartbeat if heartbeat_s is None else heartbeat_s
        lease_s = current_lease if lease_s is None else lease_s
        if lease_s < 2 * heartbeat_s:
            raise InvalidInput(
                f"A node lease of {lease_s:g} s is less than two heartbeats of "
                f"{heartbeat_s:g} s: one late heartbeat would make a live node lost.")
        put_setting(session, "node_heartbeat_s", heartbeat_s)
        put_setting(session, "node_lease_s", lease_s)
        audit(session, actor, "settings.update", "nodes",
              f"heartbeat every {heartbeat_s:g} s, lost after {lease_s:g} s")


def default_name() -> str:
    return socket.gethostname().split(".")[0] or "workdeck"


def node_name(raw: str) -> str:
    name = free_text(raw, 64, one_line=True).strip()
    if not name or any(c.isspace() or c == "/" for c in name):
        raise InvalidInput(f"{raw!r} is not a node name: one word of 64 characters at "
                           "most, like ops-1.")
    return name


class Registry:
    """This node's row, and everyone's."""

    def __init__(self, store: Store, name: str, address: str = "") -> None:
        self.store = store
        self.name = node_name(name)
        self.address = address
        # What this node does, told at each heartbeat (the run engine, the checker).
        self.workers_checked = lambda: 0
        self.runs_executing = lambda: 0
        self.draining = False
        self.heartbeat_s, self.lease_s = HEARTBEAT_S, LEASE_S  # the settings, as last read
        self.live: frozenset[str] = frozenset()  # the nodes alive at the last heartbeat
        self.taking: frozenset[str] = frozenset()  # those of them that take new runs
        # Told when the live nodes change (the checker takes its share again).
        self.listeners: list[Callable[[], None]] = []
        # What this node does when it finds it was lost and its runs were taken over:
        # stop them, writing nothing (the run engine). Then it rejoins.
        self.on_lost: Callable[[str], Awaitable[None]] | None = None
        # The leader takes over what a node that is gone left (the run engine); told the
        # node's name, after each heartbeat that finds one.
        self.take_over: Callable[[str], Awaitable[None]] | None = None
        self.left: list[str] = []  # gone nodes with unfinished runs, at the last heartbeat
        self.lost_by = ""  # who found this node lost, until it has stopped its stale work
        self._moved = False
        self._mine: dict[str, bool] = {}
        # When this node's own heartbeats stopped for a while (the database restarted, or
        # was out of reach), every other node's may have too: none is taken over until a
        # lease has passed with heartbeats again, so that each could say it is alive.
        self._beat_at: float | None = None
        self._quiet_until = 0.0
        if store.dialect == "postgresql":  # one SQLite server per store: nobody to fence
            store.fence = self.fence

    # -------------------------------------------------------- this node (in a thread)

    def register(self) -> None:
        """Take this node's row (a node of that name that is alive elsewhere refuses)."""
        with self.store.write(fenced=False) as session:
            now = database_now(session)
            self.heartbeat_s, self.lease_s = read_timing(session)
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is not None and row.stopped_at is None and \
                    elapsed(now, row.heartbeat_at) < row.lease_s and _elsewhere(row):
                raise Conflict(
                    f"A node named {self.name} is alive on {row.host} (pid {row.pid}, seen "
                    f"{elapsed(now, row.heartbeat_at):.0f} s ago): give this server another "
                    "name (--node NAME).")
            row = row or Node(name=self.name)
            row.address, row.host, row.pid = self.address, socket.gethostname(), os.getpid()
            row.version, row.started_at, row.heartbeat_at = __version__, now, now
            row.lease_s = self.lease_s
            row.stopped_at = None
            # A new life: what an earlier one left was taken over, or is recovered now.
            row.lost_at, row.taken_over_by = None, ""
            session.add(row)
            self.draining = row.draining

    def heartbeat(self) -> None:
        # Its own row only: not queued behind the other writes (a busy database held it
        # up to 30 s, and a live node looked lost).
        with self.store.write(fenced=False, queued=False) as session:
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is None:  # removed meanwhile: this node is back
                row = Node(name=self.name, address=self.address, host=socket.gethostname(),
                           pid=os.getpid(), version=__version__)
            now = row.heartbeat_at = database_now(session)
            self.heartbeat_s, self.lease_s = read_timing(session)
            row.lease_s = self.lease_s  # its promise: the next heartbeat comes before
            row.workers_checked = self.workers_checked()
            row.runs_executing = self.runs_executing()
            session.add(row)
            self.draining = row.draining
            if row.lost_at is not None and not self.lost_by:
                self.lost_by = row.taken_over_by or "another node"
                log.error("this node (%s) was found lost by %s, which took its runs over "
                          "at %s: it stops what it ran, writing nothing, then rejoins",
                          self.name, self.lost_by, iso(row.lost_at))
            nodes = session.exec(select(Node.name, Node.heartbeat_at, Node.lease_s,
                                        Node.stopped_at, Node.draining)).all()
            alive = [(name, draining) for name, at, lease_s, stopped, draining in nodes
                     if stopped is None and elapsed(now, at) < lease_s and name != self.name]
            live = frozenset(name for name, _ in alive) | {self.name}
            self.taking = frozenset(name for name, draining in alive if not draining) | (
                frozenset() if self.draining else {self.name})
            # Runs not finished whose node is gone (lost, or stopped with runs that wait).
            self.left = sorted(set(session.exec(
                select(Run.node).where(Run.finished_at == None,  # noqa: E711
                                       Run.node.not_in([*live, ""])).distinct()).all()))
        if live != self.live:
            if self.live:
                log.warning("the live nodes are now %s (were %s)", ", ".join(sorted(live)),
                            ", ".join(sorted(self.live)))
            else:
                log.info("the live nodes are %s", ", ".join(sorted(live)))
            self.live = live
            self._mine = {}
            self._moved = True

    def fence(self, session: Session) -> None:
        """Refuse a write of this node while it is marked lost (Store.fence)."""
        lost = session.exec(select(Node.lost_at, Node.taken_over_by)
                            .where(Node.name == self.name)).first()
        if lost is not None and lost[0] is not None:
            raise Fenced(f"This server (node {self.name}) lost touch with the database for "
                         f"a while and {lost[1] or 'another node'} took over its runs: it "
                         "writes nothing until it has stopped them, within seconds; try "
                         "again then, or on another node.")

    def rejoin(self) -> None:
        """This node has stopped its stale work: it writes again."""
        with self.store.write(fenced=False) as session:
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is not None:
                row.lost_at, row.taken_over_by = None, ""
                session.add(row)
        log.warning("this node (%s) rejoins: the runs it ran were taken over by %s",
                    self.name, self.lost_by)
        self.lost_by = ""

    def leads(self) -> bool:
        """Whether this node does what only one should: take over what gone nodes left,
        sample the pools' usage, prune old runs (the live node with the first name)."""
        return not self.lost_by and min(self.live or {self.name}) == self.name

    def mine(self, worker: str) -> bool:
        """Whether this node checks `worker` (every worker, until it knows who is alive)."""
        if len(self.live) <= 1:
            return True
        mine = self._mine.get(worker)
        if mine is None:  # a hash per worker per membership, not per schedule round
            mine = self._mine[worker] = owner(worker, self.live) == self.name
        return mine

    def stopped(self) -> None:
        with self.store.write(fenced=False) as session:
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is not None:
                row.stopped_at = database_now(session)
                row.runs_executing = 0
                session.add(row)

    async def run_forever(self) -> None:
        """Heartbeat in a thread of its own, whatever the event loop is doing: a node whose
        loop is busy (a thousand workers' first checks kept it so for 20 s) is alive, and
        must not look lost. What a heartbeat found is acted on on the loop."""
        loop = asyncio.get_running_loop()
        beaten = asyncio.Event()
        stop = threading.Event()

        def beat_forever() -> None:
            while not stop.is_set():
                try:
                    self.heartbeat()
                except Exception:  # the next heartbeat tries again
                    pass_failed(log, "the heartbeat of node %s failed", self.name)
                else:
                    self._beaten()
                    with contextlib.suppress(RuntimeError):  # the loop is closing
                        loop.call_soon_threadsafe(beaten.set)
                stop.wait(self.heartbeat_s)

        thread = threading.Thread(target=beat_forever, name="heartbeat", daemon=True)
        thread.start()
        try:
            while True:
                await beaten.wait()
                beaten.clear()
                if self._moved:  # told on the loop: listeners touch asyncio objects
                    self._moved = False
                    for listener in self.listeners:
                        listener()
                await self._after_heartbeat()
        finally:
            stop.set()

    def _beaten(self) -> None:
        now = time.monotonic()
        if self._beat_at is not None and now - self._beat_at > 2 * self.heartbeat_s:
            self._quiet_until = now + self.lease_s
            log.warning("node %s missed heartbeats for %.0f s: it takes nothing over for "
                        "%.0f s, while the others say they are alive", self.name,
                        now - self._beat_at, self.lease_s)
        self._beat_at = now

    async def _after_heartbeat(self) -> None:
        if self.lost_by:
            try:
                if self.on_lost is not None:
                    await self.on_lost(self.lost_by)
                await asyncio.to_thread(self.rejoin)
            except Exception:
                pass_failed(log, "node %s could not rejoin yet", self.name)
            return
        if self.leads() and self.take_over is not None and \
                time.monotonic() >= self._quiet_until:
            for gone in self.left:
                try:
                    await self.take_over(gone)
                except Exception:  # tried again after the next heartbeat
                    pass_failed(log, "taking over what node %s left failed", gone)

    # -------------------------------------------------------- every node

    def list(self) -> list[dict[str, Any]]:
        with self.store.read() as session:
            now = database_now(session)
            rows = session.exec(select(Node).order_by(Node.name)).all()
        return [public(row, now, row.name == self.name) for row in rows]

    async def set_draining(self, name: str, draining: bool, actor: str) -> dict[str, Any]:
        def change() -> dict[str, Any]:
            with self.store.write() as session:
                row = session.exec(select(Node).where(Node.name == name)).first()
                if row is None:
                    raise NotFound(f"No node is named {name!r}: `workdeck nodes` lists them.")
                row.draining = draining
                session.add(row)
                audit(session, actor, "node.drain" if draining else "node.undrain", name,
                      "takes no new runs" if draining else "takes new runs again")
                now = database_now(session)
                return public(row, now, row.name == self.name)

        shown = await retrying(self.store, change, what=f"node {name}")
        if name == self.name:
            self.draining = draining
        return shown


def owner(worker: str, live: Iterable[str]) -> str:
    """The live node that checks `worker`: rendezvous hashing (stable, even, and a node
    joining or leaving moves only the workers that must move)."""
    return max(live, key=lambda node: hashlib.blake2b(
        f"{node}\0{worker}".encode(), digest_size=8).digest())


def _elsewhere(row: Node) -> bool:
    """Whether the node a row names may still run: on another host (its heartbeat says),
    or as another process alive on this one (a node killed here is not)."""
    if row.host != socket.gethostname():
        return True
    if row.pid == os.getpid():
        return False
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # killed, and not yet reaped by its parent: a zombie runs nothing
        return Path(f"/proc/{row.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def elapsed(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds() if then.tzinfo else \
        (now.replace(tzinfo=None) - then).total_seconds()


def public(row: Node, now: datetime, this: bool) -> dict[str, Any]:
    age = max(0.0, elapsed(now, row.heartbeat_at))
    state = STOPPED if row.stopped_at is not None else UP if age < row.lease_s else LOST
    return {"name": row.name, "state": state, "this": this, "address": row.address,
            "host": row.host, "pid": row.pid, "version": row.version,
            "started_at": iso(row.started_at), "last_seen": iso(row.heartbeat_at),
            "seen_s_ago": round(age, 1), "draining": row.draining,
            "workers_checked": row.workers_checked if state == UP else 0,
            "runs_executing": row.runs_executing if state == UP else 0}


def refuse_if_draining(registry: Registry) -> None:
    """A launch on a draining node is refused when no other node would claim the run."""
    if registry.draining and not registry.taking - {registry.name}:
        raise Conflict(f"This server (node {registry.name}) is draining: it finishes what it "
                       f"runs and takes no new runs (`workdeck node undrain {registry.name}`), "
                       "and no other node takes them.")
