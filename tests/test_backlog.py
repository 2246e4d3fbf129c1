"""A run's outcome is never hidden behind a store fault: what the store refuses waits in
the run's backlog, in order, and is shown meanwhile (backend/runs/backlog.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import contextmanager

from conftest import both_stores
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from backend.events import EventBus
from backend.runs.backlog import Backlog, StepChange, set_fields
from backend.runs.leases import Leases
from backend.runs.records import RunRecords
from backend.store.models import (
    FAILED,
    QUEUED,
    RUNNING,
    SKIPPED,
    Run,
    RunStep,
    utcnow,
)

pytestmark = both_stores


def refusing(store, monkeypatch):
    """Make the store refuse every write as a full disk does, until `state["refuse"]` is
    False."""
    state = {"refuse": True, "refused": 0}
    real = store.write

    @contextmanager
    def write():
        if state["refuse"]:
            state["refused"] += 1
            error = OperationalError("INSERT", {}, sqlite3.OperationalError(
                "database or disk is full"))
            store.fault = "the data directory is full"
            raise error
        with real() as session:
            yield session

    monkeypatch.setattr(store, "write", write)
    return state


def stored(store, run_id):
    with store.read() as session:
        run = session.get(Run, run_id)
        steps = session.exec(select(RunStep).where(RunStep.run_id == run_id)
                             .order_by(RunStep.position)).all()
        return run.status, [(s.position, s.status) for s in steps]


async def test_an_outcome_the_store_refuses_is_shown_then_stored_in_order(make_store,
                                                                         monkeypatch):
    store = make_store()
    with store.write() as session:
        run = Run(runbook="r", environment="Test", status=RUNNING,
                  definition='{"steps": [{"name": "a"}, {"name": "b"}], "variables": []}')
        session.add(run)
        session.flush()
        session.add_all([RunStep(run_id=run.id, position=1, name="a", status=RUNNING),
                         RunStep(run_id=run.id, position=2, name="b", status=QUEUED)])
        run_id = run.id
    backlog = Backlog(store)
    records = RunRecords(store, EventBus(), backlog)
    leases = Leases(store, backlog)
    state = refusing(store, monkeypatch)

    # What the engine does when a step is stopped on a full disk: none of it waits.
    await asyncio.wait_for(records._set_step(
        run_id, 1, None, status=FAILED, reason="the data directory is full: the step was "
        "stopped"), 5)
    await asyncio.wait_for(records._change_steps(run_id, StepChange(
        None, None, frozenset([QUEUED]), set_fields(status=SKIPPED, reason="not run")),
        "the steps not reached"), 5)
    await asyncio.wait_for(leases.release_run(run_id), 5)
    await asyncio.wait_for(records._set_run(run_id, status=FAILED, reason="a step failed",
                                            finished_at=utcnow()), 5)

    shown = await asyncio.to_thread(records.get, run_id)
    assert (shown["status"], shown["reason"]) == (FAILED, "a step failed")
    assert [(s["position"], s["status"]) for s in shown["steps"]] == [(1, FAILED),
                                                                      (2, SKIPPED)]
    assert "data directory is full" in shown["steps"][0]["reason"]
    [listed] = await asyncio.to_thread(records.list)
    assert listed["status"] == FAILED
    # The store has none of it yet, and held log lines wait behind it.
    assert await asyncio.to_thread(stored, store, run_id) == (RUNNING, [(1, RUNNING),
                                                                        (2, QUEUED)])
    assert store.urgent == 1 and backlog.waiting(run_id)

    state["refuse"] = False
    await asyncio.wait_for(backlog.settle(run_id), 30)
    assert await asyncio.to_thread(stored, store, run_id) == (FAILED, [(1, FAILED),
                                                                       (2, SKIPPED)])
    assert store.urgent == 0 and not backlog.waiting(run_id)
