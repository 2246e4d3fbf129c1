"""How the server reaches a worker, for a health check and for a step alike.

What the store says of a worker (a Target: its address, login, pinned key, work folder)
becomes one way in: over SSH through the pool of connections (a check in the
connection's long-lived check shell, a step on a channel of its own), or on the server's
own machine for the built-in worker. The checker, the run engine and the reaper all
reach workers through here, and nowhere else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlmodel import select

from backend.store.db import Store
from backend.store.models import HostKey, Worker
from backend.transport.connections import ConnectionPool
from backend.transport.local import LocalRunner
from backend.transport.remote import LocalTransport, SSHTransport, Transport
from backend.transport.ssh import CommandResult, Endpoint

if TYPE_CHECKING:
    from backend.health.probe import CheckScript

STEP_CONNECT_S = 30.0  # a step waits this long for a connection to its worker


@dataclass
class Target:
    """What reaching a worker takes, read from the store (once per sweep for checks)."""

    id: int
    name: str
    builtin: bool
    enabled: bool
    endpoint: Endpoint
    work_dir: str
    checked_at_epoch: float | None


class Reach:
    def __init__(self, store: Store, connections: ConnectionPool,
                 local: LocalRunner | None = None) -> None:
        self.store = store
        self.connections = connections
        self.local = local or LocalRunner()

    def targets(self, names: list[str] | None = None) -> list[Target]:
        """The named workers (all when None), as reaching them takes; call in a thread."""
        with self.store.read() as session:
            # Rows, not ORM objects: the schedule reads every worker of a big fleet.
            query = select(Worker.__table__)
            if names is not None:
                query = query.where(Worker.name.in_(names))
            workers = session.connection().execute(query).all()
            pins = dict(session.connection().execute(
                select(HostKey.worker_id, HostKey.public_key)).all())
        return [
            Target(
                id=w.id,
                name=w.name,
                builtin=w.builtin,
                enabled=w.enabled,
                endpoint=Endpoint(
                    host=w.host, port=w.port, user=w.user, key_path=w.key_path,
                    use_agent=w.use_agent, pinned_key=pins.get(w.id),
                    trust_host_key=w.trust_host_key and w.id not in pins,
                ),
                work_dir=w.work_dir,
                checked_at_epoch=epoch(w.checked_at) if w.checked_at else None,
            )
            for w in workers
        ]

    async def target(self, name: str) -> Target:
        return (await asyncio.to_thread(self.targets, [name]))[0]

    async def check(self, target: Target, script: CheckScript, timeout: float
                    ) -> CommandResult:
        """Run a health check; SSHFailure (HostKeyRefused) when the worker cannot be had."""
        if target.builtin:
            return await self.local.run(script.command(), timeout=timeout)
        return await self.connections.run_script(
            target.name, target.endpoint, script.call, timeout=timeout,
            definitions=script.definitions)

    async def transport(self, target: Target) -> Transport:
        """A way to run a step's commands there, connected (SSHFailure when it cannot)."""
        if target.builtin:
            return LocalTransport()
        conn = await self.connections.connection(target.name, target.endpoint,
                                                 timeout=STEP_CONNECT_S)
        return SSHTransport(conn)

    async def transport_to(self, name: str) -> Transport:
        return await self.transport(await self.target(name))


def epoch(value: datetime) -> float:
    """Unix time of a stored time (SQLite gives them back without their zone: UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
