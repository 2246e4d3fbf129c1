"""Health check results: what one check found (Outcome), stored a batch at a time in one
transaction (each worker's state, its history kept to the policy's size, host keys
presented or pinned), and a worker's new public state made from the one published
before it, so that a sweep of thousands publishes without reading them back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, update
from sqlmodel import Session, select

from backend import fleet
from backend.store.db import Store
from backend.store.models import DISABLED, HealthCheck, HostKey, Worker
from backend.transport.hostkeys import fingerprint_of


@dataclass
class Outcome:
    worker_id: int
    name: str
    status: str
    reason: str
    facts: dict[str, Any]
    latency_ms: float | None
    connect_ms: float | None
    load1: float | None = None
    disk_free_mb: float | None = None
    presented_host_key: str | None = None
    key_changed: bool = False
    accepted_key: str | None = None
    accepted_from: str | None = None
    unreachable: bool = False  # no SSH session could be had (refused, timed out, lost)


_UPDATE_WORKER = update(Worker.__table__).where(Worker.__table__.c.id == bindparam("worker"))


def write(store: Store, batch: list[Outcome], history_size: int, now: datetime) -> bool:
    """Store a batch of results in one transaction: each worker's latest state, its
    history (pruned to `history_size`), host keys presented or pinned. True when a pinned
    key changed how some worker is reached."""
    keys_changed = False
    with store.write() as session:
        ids = [o.worker_id for o in batch]
        # Removed while being checked: their results have nowhere to go.
        live = set(session.exec(select(Worker.id).where(Worker.id.in_(ids))).all())
        batch = [o for o in batch if o.worker_id in live]
        rows = []
        for o in batch:
            # `worker` is the WHERE clause's id; the other keys are what is SET.
            row = {"worker": o.worker_id, "check_status": o.status, "reason": o.reason,
                   "checked_at": now, "latency_ms": o.latency_ms}
            if o.connect_ms is not None:
                row["connect_ms"] = o.connect_ms
            if o.facts:
                row["facts"] = json.dumps(o.facts)
            rows.append(row)
        # Rows with the same keys go together: one executemany per shape. Core
        # statements, not the ORM's bulk forms: a sweep's rows are plain values, and
        # the ORM's bookkeeping per row was most of the write's time.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shapes.setdefault(tuple(sorted(row)), []).append(row)
        connection = session.connection()
        for same in shapes.values():
            connection.execute(_UPDATE_WORKER, same)
        if batch:
            store.insert_rows(session, HealthCheck.__table__, [
                {"worker_id": o.worker_id, "checked_at": now, "status": o.status,
                 "reason": o.reason, "latency_ms": o.latency_ms,
                 "connect_ms": o.connect_ms, "load1": o.load1,
                 "disk_free_mb": o.disk_free_mb} for o in batch])
        for o in batch:
            if o.presented_host_key or o.accepted_key:
                _record_host_key(session, o)
                keys_changed = True
        _prune(session, [o.worker_id for o in batch], history_size)
    return keys_changed


def _record_host_key(session: Any, outcome: Outcome) -> None:
    worker = session.get(Worker, outcome.worker_id)
    if outcome.presented_host_key:
        if outcome.key_changed and outcome.presented_host_key != worker.presented_host_key:
            fleet.audit(session, "server", "worker.hostkey_changed", worker.name,
                        f"presented {fingerprint_of(outcome.presented_host_key)}; "
                        "refused, the pinned key was kept")
        worker.presented_host_key = outcome.presented_host_key
    if outcome.accepted_key and session.get(HostKey, worker.id) is None:
        session.add(HostKey(
            worker_id=worker.id, public_key=outcome.accepted_key,
            fingerprint=fingerprint_of(outcome.accepted_key),
            trusted_by=outcome.accepted_from or "",
        ))
        worker.trust_host_key = False
        worker.presented_host_key = None
        fleet.audit(session, "server", "worker.trust", worker.name,
                    f"{fingerprint_of(outcome.accepted_key)} pinned from "
                    f"{outcome.accepted_from}")
    session.add(worker)


def _prune(session: Session, worker_ids: list[int], keep: int) -> None:
    # Cheap check first: most batches add one row per worker well under the limit.
    oversized = session.exec(
        select(HealthCheck.worker_id)
        .where(HealthCheck.worker_id.in_(worker_ids))
        .group_by(HealthCheck.worker_id)
        .having(func.count() > keep + 10)
    ).all()
    for worker_id in oversized:
        cutoff = session.exec(
            select(HealthCheck.id).where(HealthCheck.worker_id == worker_id)
            .order_by(HealthCheck.id.desc()).offset(keep).limit(1)
        ).first()
        if cutoff is not None:
            session.exec(delete(HealthCheck).where(
                HealthCheck.worker_id == worker_id, HealthCheck.id <= cutoff))


def published_state(previous: dict[str, Any] | None, outcome: Outcome, now: datetime
                    ) -> dict[str, Any] | None:
    """A worker's public state after this check, from the one published before it; None
    when only the store can say (a host key was refused or pinned, or none is known)."""
    if previous is None or outcome.presented_host_key or outcome.accepted_key:
        return None
    updated = dict(previous)
    updated.update(status=outcome.status if previous["enabled"] else DISABLED,
                   check_status=outcome.status, health=outcome.status, reason=outcome.reason,
                   checked_at=fleet.iso(now), latency_ms=outcome.latency_ms)
    if outcome.connect_ms is not None:
        updated["connect_ms"] = outcome.connect_ms
    if outcome.facts:
        updated["facts"] = outcome.facts
    return updated
