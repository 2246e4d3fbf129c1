"""The servers using one store ("nodes"): each registers itself and heartbeats, so that
`workdeck nodes` shows which are alive, what each does, and which are draining.

Alive is judged by the database's time: a node whose last heartbeat is older than
LEASE_S is lost (it died, or cannot reach the database), one that said it stopped is
stopped. A node that is draining finishes what it runs and takes no new runs.

The health checks are shared among the live nodes: each worker is checked by the node
that rendezvous hashing gives it (the highest hash of node and worker), so the fleet is
spread evenly, and when a node joins or leaves only the workers that must move do. Each
node learns who is alive at its heartbeat; for as long as two nodes see the membership
differently (a heartbeat at most), a worker may be checked by both, or by neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import select

from backend import __version__
from backend.errors import Conflict, InvalidInput, NotFound
from backend.fleet import audit, iso
from backend.fleet.validation import free_text
from backend.store.db import Store, pass_failed, retrying
from backend.store.models import Node
from backend.store.sql import database_now

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
LEASE_S = 15.0  # a node silent for longer is lost

UP, STOPPED, LOST = "up", "stopped", "lost"


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
        self.live: frozenset[str] = frozenset()  # the nodes alive at the last heartbeat
        # Told when the live nodes change (the checker takes its share again).
        self.listeners: list[Callable[[], None]] = []
        self._moved = False
        self._mine: dict[str, bool] = {}

    # -------------------------------------------------------- this node (in a thread)

    def register(self) -> None:
        """Take this node's row (a node of that name that is alive elsewhere refuses)."""
        with self.store.write() as session:
            now = database_now(session)
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is not None and row.stopped_at is None and \
                    _age(now, row.heartbeat_at) < LEASE_S and _elsewhere(row):
                raise Conflict(
                    f"A node named {self.name} is alive on {row.host} (pid {row.pid}, seen "
                    f"{_age(now, row.heartbeat_at):.0f} s ago): give this server another "
                    "name (--node NAME).")
            row = row or Node(name=self.name)
            row.address, row.host, row.pid = self.address, socket.gethostname(), os.getpid()
            row.version, row.started_at, row.heartbeat_at = __version__, now, now
            row.stopped_at = None
            session.add(row)
            self.draining = row.draining

    def heartbeat(self) -> None:
        with self.store.write() as session:
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is None:  # removed meanwhile: this node is back
                row = Node(name=self.name, address=self.address, host=socket.gethostname(),
                           pid=os.getpid(), version=__version__)
            now = row.heartbeat_at = database_now(session)
            row.workers_checked = self.workers_checked()
            row.runs_executing = self.runs_executing()
            session.add(row)
            self.draining = row.draining
            live = frozenset(name for name, at, stopped in session.exec(
                select(Node.name, Node.heartbeat_at, Node.stopped_at))
                if stopped is None and _age(now, at) < LEASE_S) | {self.name}
        if live != self.live:
            if self.live:
                log.warning("the live nodes are now %s (were %s)", ", ".join(sorted(live)),
                            ", ".join(sorted(self.live)))
            else:
                log.info("the live nodes are %s", ", ".join(sorted(live)))
            self.live = live
            self._mine = {}
            self._moved = True

    def mine(self, worker: str) -> bool:
        """Whether this node checks `worker` (every worker, until it knows who is alive)."""
        if len(self.live) <= 1:
            return True
        mine = self._mine.get(worker)
        if mine is None:  # a hash per worker per membership, not per schedule round
            mine = self._mine[worker] = owner(worker, self.live) == self.name
        return mine

    def stopped(self) -> None:
        with self.store.write() as session:
            row = session.exec(select(Node).where(Node.name == self.name)).first()
            if row is not None:
                row.stopped_at = database_now(session)
                row.runs_executing = 0
                session.add(row)

    async def run_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.heartbeat)
            except Exception:  # the next heartbeat tries again
                pass_failed(log, "the heartbeat of node %s failed", self.name)
            else:
                if self._moved:  # told on the loop: listeners touch asyncio objects
                    self._moved = False
                    for listener in self.listeners:
                        listener()
            await asyncio.sleep(HEARTBEAT_S)

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


def _age(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds() if then.tzinfo else \
        (now.replace(tzinfo=None) - then).total_seconds()


def public(row: Node, now: datetime, this: bool) -> dict[str, Any]:
    age = max(0.0, _age(now, row.heartbeat_at))
    state = STOPPED if row.stopped_at is not None else UP if age < LEASE_S else LOST
    return {"name": row.name, "state": state, "this": this, "address": row.address,
            "host": row.host, "pid": row.pid, "version": row.version,
            "started_at": iso(row.started_at), "last_seen": iso(row.heartbeat_at),
            "seen_s_ago": round(age, 1), "draining": row.draining,
            "workers_checked": row.workers_checked if state == UP else 0,
            "runs_executing": row.runs_executing if state == UP else 0}


def refuse_if_draining(registry: Registry) -> None:
    if registry.draining:
        raise Conflict(f"This server (node {registry.name}) is draining: it finishes what it "
                       f"runs and takes no new runs (`workdeck node undrain {registry.name}`).")
