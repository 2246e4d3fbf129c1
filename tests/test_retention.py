"""Retention, on both stores: finished runs and their logs go after their days or past the
total size, oldest first, the audit log after its days; a run in progress, or one whose
orphaned step holds a slot, is never touched."""

from __future__ import annotations

from datetime import timedelta

from conftest import both_stores
from sqlalchemy import func
from sqlmodel import select

from backend.store.models import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    AuditEvent,
    Decision,
    Lease,
    LogChunk,
    Run,
    RunStep,
    Worker,
    utcnow,
)
from backend.store.retention import GB, Retention, prune_once

pytestmark = both_stores


def add_run(store, *, status: str, days_ago: float, output_bytes: int = 100) -> int:
    when = utcnow() - timedelta(days=days_ago)
    with store.write() as session:
        run = Run(runbook="r", environment="Test", definition="{}", status=status,
                  created_at=when, started_at=when, output_bytes=output_bytes,
                  finished_at=None if status == RUNNING else when)
        session.add(run)
        session.flush()
        session.add(RunStep(run_id=run.id, position=1, name="a", status=status))
        session.add(LogChunk(run_id=run.id, first_seq=1, last_seq=1, position=1, worker="w",
                             stream="stdout", lines="1.0\tline"))
        session.add(Decision(run_id=run.id, action="retry", actor="alice"))
        return run.id


def left(store) -> dict[str, set[int]]:
    with store.read() as session:
        return {"runs": set(session.exec(select(Run.id)).all()),
                "steps": set(session.exec(select(RunStep.run_id)).all()),
                "logs": set(session.exec(select(LogChunk.run_id)).all()),
                "decisions": set(session.exec(select(Decision.run_id)).all())}


def test_old_finished_runs_go_with_their_logs_and_the_rest_stay(make_store):
    store = make_store()
    old = add_run(store, status=SUCCEEDED, days_ago=40)
    old_failed = add_run(store, status=FAILED, days_ago=31)
    still_running = add_run(store, status=RUNNING, days_ago=50)
    orphaned = add_run(store, status=FAILED, days_ago=45)
    recent = add_run(store, status=SUCCEEDED, days_ago=2)
    with store.write() as session:
        worker = Worker(name="w", host="127.0.0.1")
        session.add(worker)
        session.flush()
        session.add(Lease(worker_id=worker.id, run_id=orphaned, position=1,
                          orphan="its processes may still run"))
        session.add(AuditEvent(at=utcnow() - timedelta(days=400), actor="a",
                               action="old", target="t"))
        session.add(AuditEvent(at=utcnow() - timedelta(days=10), actor="a",
                               action="new", target="t"))

    removed = prune_once(store, Retention(runs_days=30, runs_gb=10, audit_days=365))

    assert removed == {"runs": 2, "audit": 1}
    kept = {still_running, orphaned, recent}
    assert left(store) == {"runs": kept, "steps": kept, "logs": kept, "decisions": kept}
    assert old not in kept and old_failed not in kept
    with store.read() as session:
        assert session.exec(select(AuditEvent.action)).all() == ["new"]


def test_past_the_total_size_the_oldest_finished_runs_go_first(make_store):
    store = make_store()
    ids = [add_run(store, status=SUCCEEDED, days_ago=5 - i, output_bytes=400) for i in range(5)]
    running = add_run(store, status=RUNNING, days_ago=9, output_bytes=10_000)
    # 1,000 bytes may be kept: of 2,000 finished, the three oldest go (1,200 bytes).
    removed = prune_once(store, Retention(runs_days=30, runs_gb=1000 / GB, audit_days=365))
    assert removed["runs"] == 3
    assert left(store)["runs"] == {ids[3], ids[4], running}
    with store.read() as session:
        kept = session.exec(select(func.sum(Run.output_bytes)).where(Run.status == SUCCEEDED)
                            ).one()
    assert kept == 800
