"""Pools' provisioners in the store: how each pool makes dynamic workers, what it is
doing, and the workers it made (each life a new worker with its own pinned host key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncssh
from sqlalchemy import func
from sqlmodel import Session, select

from backend.errors import InvalidInput, NotFound
from backend.fleet import validation
from backend.fleet.audit import audit, iso
from backend.store.db import Store
from backend.store.models import HostKey, Pool, PoolMember, Provisioner, Worker, utcnow
from backend.transport.hostkeys import fingerprint_of
from wire.pools import ProvisionerSet
from wire.workers import WorkerCreate


@dataclass(frozen=True)
class Plan:
    """One pool's provisioner as the loop that runs it reads it."""

    pool: str
    create: str
    destroy: str
    min: int
    max: int
    capacity: int
    idle_s: float
    wait_s: float
    timeout_s: float
    per_minute: int


def _command(value: str, what: str) -> str:
    value = value.strip()
    if value != validation.free_text(value, 2000, one_line=True) or not value:
        raise InvalidInput(f"The {what} command must be one line of plain text.")
    return value


def set_provisioner(store: Store, pool_name: str, spec: ProvisionerSet, actor: str) -> None:
    if spec.min > spec.max:
        raise InvalidInput(f"A provisioner cannot keep {spec.min} workers warm with at most "
                           f"{spec.max}; make --min at most --max.")
    create, destroy = _command(spec.create, "create"), _command(spec.destroy, "destroy")
    with store.write() as session:
        pool = _pool(session, pool_name)
        row = session.get(Provisioner, pool.id)
        if row is None:
            row = Provisioner(pool_id=pool.id, create_command=create, destroy_command=destroy)
        row.create_command, row.destroy_command = create, destroy
        row.min_workers, row.max_workers, row.capacity = spec.min, spec.max, spec.capacity
        row.idle_s, row.wait_s, row.timeout_s = spec.idle_s, spec.wait_s, spec.timeout_s
        row.per_minute = spec.per_minute
        session.add(row)
        audit(session, actor, "pool.provision", pool.name,
              f"create: {create}; destroy: {destroy}; {spec.min} to {spec.max} workers of "
              f"{spec.capacity} slots, made after {spec.wait_s:g} s of waiting, destroyed "
              f"after {spec.idle_s:g} s idle")


def clear_provisioner(store: Store, pool_name: str, actor: str) -> None:
    """Take a pool's provisioner away, once it has no dynamic worker left to destroy."""
    with store.write() as session:
        pool = _pool(session, pool_name)
        row = session.get(Provisioner, pool.id)
        if row is None:
            raise InvalidInput(f"Pool {pool.name!r} has no provisioner.")
        alive = _dynamic_counts(session).get(pool.id, 0)
        if alive:
            raise InvalidInput(
                f"Pool {pool.name!r} still has {alive} dynamic worker"
                f"{'s' if alive != 1 else ''} that only its provisioner can destroy; set "
                "--max 0 and take the provisioner away once they are gone.")
        session.delete(row)
        audit(session, actor, "pool.unprovision", pool.name)


def plans(store: Store) -> list[Plan]:
    with store.read() as session:
        rows = session.exec(select(Pool.name, Provisioner)
                            .join(Provisioner, Provisioner.pool_id == Pool.id)).all()
        return [Plan(name, p.create_command, p.destroy_command, p.min_workers, p.max_workers,
                     p.capacity, p.idle_s, p.wait_s, p.timeout_s, p.per_minute)
                for name, p in rows]


def dynamic_workers(store: Store, pool_name: str) -> list[dict[str, Any]]:
    """The workers a pool's provisioner made, with what the loop decides on."""
    from backend.fleet.workers import list_workers  # see add_dynamic_worker

    with store.read() as session:
        names = session.exec(
            select(Worker.name).join(PoolMember, PoolMember.worker_id == Worker.id)
            .join(Pool, Pool.id == PoolMember.pool_id)
            .where(Pool.name == pool_name, Worker.dynamic)).all()
    return list_workers(store, names) if names else []


def record(store: Store, pool_name: str, state: str, note: str | None = None,
           action: str | None = None, target: str = "") -> None:
    """What the provisioner is doing now, and (with `note`) what just happened; with
    `action`, the audit log hears of it too."""
    with store.write() as session:
        pool = session.exec(select(Pool).where(Pool.name == pool_name)).first()
        row = session.get(Provisioner, pool.id) if pool is not None else None
        if row is None:
            return
        row.state = state
        if note is not None:
            row.note, row.note_at = validation.free_text(note, 1000, one_line=True), utcnow()
        session.add(row)
        if action:
            audit(session, f"provisioner of {pool_name}", action, target or pool_name,
                  note or "")


def add_dynamic_worker(store: Store, pool_name: str, name: str, made: dict[str, Any],
                       capacity: int) -> str:
    """Register the worker a provisioner made, its host key pinned from the provisioner's
    word (never trusted on first use): one sentence when the word is not usable."""
    # Here, not at the top: workers imports pools, which shows provisioners.
    from backend.fleet.workers import _insert_worker, _validated

    if not isinstance(made, dict):
        raise InvalidInput("its output is not one JSON object")
    host_key = made.get("host_key")
    if not isinstance(host_key, str) or not host_key.strip():
        raise InvalidInput("its output has no host_key to pin")
    try:
        fingerprint = fingerprint_of(host_key.strip())
    except (asyncssh.KeyImportError, ValueError):
        raise InvalidInput("its host_key is not an OpenSSH public key") from None
    try:
        spec = _validated(WorkerCreate(
            name=name, host=made.get("host") or "", port=made.get("port") or 22,
            user=made.get("user"), key_path=made.get("key"), pools=[pool_name],
            capacity=capacity))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"its output is not a worker: {exc}") from None
    with store.write() as session:
        worker = _insert_worker(session, spec, f"provisioner of {pool_name}")
        worker.dynamic = True
        session.add(worker)
        session.add(HostKey(worker_id=worker.id, public_key=host_key.strip(),
                            fingerprint=fingerprint, trusted_by=f"provisioner of {pool_name}"))
    return fingerprint


def provisioners_public(session: Session) -> dict[int, dict[str, Any]]:
    """Every provisioner as the API shows it (wire.pools.Provisioner), by pool id."""
    counts = _dynamic_counts(session)
    return {p.pool_id: {
        "create": p.create_command, "destroy": p.destroy_command, "min": p.min_workers,
        "max": p.max_workers, "capacity": p.capacity, "idle_s": p.idle_s, "wait_s": p.wait_s,
        "timeout_s": p.timeout_s, "per_minute": p.per_minute, "state": p.state,
        "note": p.note, "note_at": iso(p.note_at), "workers": counts.get(p.pool_id, 0)}
        for p in session.exec(select(Provisioner)).all()}


def _dynamic_counts(session: Session) -> dict[int, int]:
    rows = session.exec(select(PoolMember.pool_id, func.count())
                        .join(Worker, Worker.id == PoolMember.worker_id)
                        .where(Worker.dynamic).group_by(PoolMember.pool_id)).all()
    return dict(rows)


def _pool(session: Session, name: str) -> Pool:
    pool = session.exec(select(Pool).where(Pool.name == name)).first()
    if pool is None:
        raise NotFound(f"No pool is named {name!r}.")
    return pool
