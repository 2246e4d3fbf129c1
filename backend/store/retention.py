"""Retention: finished runs and their logs are kept for a number of days and up to a total
size, the audit log for a year; everything older is pruned in the background.

Pruning never touches a run that is queued, running or waiting, nor one whose orphaned
steps still hold a slot. It works in small transactions, so the writers that matter
(logs, leases) never wait long behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import delete, func
from sqlmodel import select

from backend import fleet
from backend.store.db import Store, pass_failed
from backend.store.models import FINISHED, AuditEvent, Lease, Run, utcnow

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 600.0
FIRST_PRUNE_S = 30.0  # after a start, once the server has settled
RUNS_PER_TRANSACTION = 20
AUDIT_PER_TRANSACTION = 5000
GB = 1024**3


class Retention(BaseModel):
    """How long what is kept is kept."""

    runs_days: float = Field(30.0, gt=0, le=36_500)
    runs_gb: float = Field(10.0, gt=0, le=100_000)  # logs of all finished runs together
    audit_days: float = Field(365.0, gt=0, le=36_500)


def get(store: Store) -> Retention:
    with store.read() as session:
        return Retention(**fleet.get_setting(session, "retention", {}))


def put(store: Store, retention: Retention, actor: str) -> Retention:
    with store.write() as session:
        fleet.put_setting(session, "retention", retention.model_dump())
        fleet.audit(session, actor, "settings.update", "retention",
                    f"runs {retention.runs_days:g} days / {retention.runs_gb:g} GB, audit "
                    f"{retention.audit_days:g} days")
    return retention


def _prunable(*columns: Any) -> Any:
    """The finished runs no orphaned step holds a slot for (their `columns`)."""
    held = select(Lease.run_id)
    return select(*(columns or (Run.id,))).where(Run.status.in_(FINISHED),
                                                 Run.id.not_in(held))


def _delete_runs(store: Store, ids: list[int]) -> None:
    with store.write() as session:
        # Steps, log chunks and decisions go with their run (ON DELETE CASCADE).
        session.exec(delete(Run).where(Run.id.in_(ids)))


def prune_once(store: Store, retention: Retention | None = None) -> dict[str, int]:
    """One pass; returns how many runs and audit events it removed."""
    retention = retention or get(store)
    removed = {"runs": 0, "audit": 0}
    cutoff = utcnow() - timedelta(days=retention.runs_days)
    while True:
        with store.read() as session:
            ids = list(session.exec(_prunable().where(Run.finished_at < cutoff)
                                    .order_by(Run.id).limit(RUNS_PER_TRANSACTION)).all())
        if not ids:
            break
        _delete_runs(store, ids)
        removed["runs"] += len(ids)
    cap = int(retention.runs_gb * GB)
    while True:
        with store.read() as session:
            total = session.exec(select(func.coalesce(func.sum(Run.output_bytes), 0)).where(
                Run.status.in_(FINISHED))).one()
            if total <= cap:
                break
            # Both columns named at once: sqlmodel's select of one gives bare values.
            oldest = session.exec(_prunable(Run.id, Run.output_bytes)
                                  .order_by(Run.id).limit(RUNS_PER_TRANSACTION)).all()
        if not oldest:
            break
        ids, freed = [], 0
        for run_id, size in oldest:
            ids.append(run_id)
            freed += size
            if total - freed <= cap:
                break
        _delete_runs(store, ids)
        removed["runs"] += len(ids)
    audit_cutoff = utcnow() - timedelta(days=retention.audit_days)
    while True:
        with store.write() as session:
            ids = list(session.exec(select(AuditEvent.id).where(AuditEvent.at < audit_cutoff)
                                    .limit(AUDIT_PER_TRANSACTION)).all())
            if ids:
                session.exec(delete(AuditEvent).where(AuditEvent.id.in_(ids)))
        if not ids:
            break
        removed["audit"] += len(ids)
    return removed


async def prune_forever(store: Store, leads: Callable[[], bool] = lambda: True) -> None:
    """Prune now and then, while this node `leads` (one of those sharing the store)."""
    await asyncio.sleep(FIRST_PRUNE_S)
    while True:
        try:
            removed = {"runs": 0, "audit": 0}
            if leads():
                removed = await asyncio.to_thread(prune_once, store)
            if removed["runs"] or removed["audit"]:
                log.info("retention removed %d runs and %d audit events", removed["runs"],
                         removed["audit"])
        except Exception:  # a full disk, say: try again at the next round
            with contextlib.suppress(Exception):
                pass_failed(log, "pruning old runs failed")
        await asyncio.sleep(PRUNE_EVERY_S)
