"""Runs as stored and shown: read, their changes written (retried through a full data
directory, never dropped) and each change published to every console."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from sqlmodel import select

from backend import fleet
from backend.errors import NotFound
from backend.events import EventBus
from backend.fanout import Fanout
from backend.fleet import audit
from backend.runs.backlog import Backlog, StepChange, set_fields
from backend.runs.course import Waiting, run_public, run_summary
from backend.runs.logstore import RunLog
from backend.store.db import Store, retrying
from backend.store.models import (
    FAILED,
    LOST,
    QUEUED,
    RUNNING,
    SKIPPED,
    WAITING,
    Decision,
    Run,
    RunStep,
    utcnow,
)

RECENT_RUNS = 200  # runs a console's snapshot carries; older ones are a `GET /api/runs` away


class RunRecords:
    def __init__(self, store: Store, bus: EventBus, backlog: Backlog,
                 fanout: Fanout | None = None) -> None:
        self.store = store
        self.bus = bus
        # Each change is told to the other nodes too, for their consoles (backend/fanout.py).
        self.fanout = fanout or Fanout(store, "", enabled=False)
        # What a run and its steps became, stored in order, shown before the store has it.
        self.backlog = backlog
        backlog.listeners.append(self._publish)
        self._waits: dict[int, Waiting] = {}
        self._moved: dict[int, asyncio.Event] = {}  # set when a run's state is published
        # The newest runs as last published, for consoles' snapshots (seeded on first use).
        self._recent: dict[int, dict[str, Any]] | None = None

    # -------------------------------------------------------- queries (call in a thread)

    def get(self, run_id: int) -> dict[str, Any]:
        with self.store.read() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NotFound(f"No run has the id {run_id}.")
            steps = session.exec(select(RunStep).where(RunStep.run_id == run_id)).all()
            decisions = session.exec(select(Decision).where(Decision.run_id == run_id)
                                     .order_by(Decision.id)).all()
            reruns = session.exec(select(Run.id).where(Run.rerun_of == run_id)
                                  .order_by(Run.id)).all()
        steps = list(steps)
        self.backlog.shown(run, steps)  # on these detached copies only
        return {**run_public(run, steps, self._waits.get(run_id), list(decisions)),
                "reruns": list(reruns)}

    def list(self, limit: int = 200, status: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as session:
            query = select(Run).order_by(Run.id.desc()).limit(limit)
            if status:
                query = query.where(Run.status == status)
            runs = session.exec(query).all()
        for run in runs:
            self.backlog.shown(run, [])
        return [run_summary(run_public(r, [], self._waits.get(r.id))) for r in runs]

    # -------------------------------------------------------- publishing (on the loop)

    async def publish_worker(self, name: str) -> None:
        for worker in await retrying(self.store, fleet.list_workers, self.store, [name],
                                     what=f"worker {name}"):
            self.bus.publish("worker", name, worker)

    async def _publish(self, run_id: int, *, tell: bool = True) -> dict[str, Any] | None:
        """Publish the run as it is now to this node's consoles (and, unless `tell` is
        False, say to the other nodes that it changed)."""
        if tell:
            self.fanout.tell("run", [run_id])
        try:
            current = await retrying(self.store, self.get, run_id, what=f"run {run_id}")
        except NotFound:
            return None
        self.bus.publish("run", str(run_id), current)
        moved = self._moved.pop(run_id, None)
        if moved is not None:
            moved.set()
        if self._recent is not None:
            self._recent[run_id] = run_summary(current)
            if len(self._recent) > RECENT_RUNS:
                del self._recent[min(self._recent)]
        return current

    def shown_recent(self) -> dict[int, dict[str, Any]] | None:
        """The newest runs as last published, by id (None before any console asked)."""
        return self._recent

    async def recent(self) -> list[dict[str, Any]]:
        """The newest RECENT_RUNS runs, newest first, from memory after the first call."""
        if self._recent is None:
            listed = await asyncio.to_thread(self.list, RECENT_RUNS)
            if self._recent is None:
                self._recent = {run["id"]: run for run in listed}
        return [self._recent[key] for key in sorted(self._recent, reverse=True)]

    def _record(self, run_id: int, position: int | None, action: str, actor: str,
                note: str) -> None:
        with self.store.write() as session:
            session.add(Decision(run_id=run_id, position=position, action=action, actor=actor,
                                 note=note))
            where = "its start" if position == 0 else f"step {position}" if position else ""
            audit(session, actor, f"run.{action}", f"run {run_id}",
                  where + (f": {note}" if note else ""))

    # -------------------------------------------------------- stored changes

    def _write_run(self, run_id: int, changes: dict[str, Any]) -> None:  # in a thread
        with self.store.write() as session:
            run = session.get(Run, run_id)
            for key, value in changes.items():
                setattr(run, key, value)
            session.add(run)

    async def _set_run(self, run_id: int, **changes: Any) -> None:
        # A run's state must reach the store: a store fault delays it (it goes before the
        # log's held lines), it is not dropped, and it is shown meanwhile.
        await self.backlog.write(run_id, partial(self._write_run, run_id, changes),
                                 what=f"run {run_id}", run=changes)
        await self._publish(run_id)

    async def _change_steps(self, run_id: int, change: StepChange, what: str) -> None:
        await self.backlog.write(run_id, partial(change.write, self.store, run_id),
                                 what=f"{what} of run {run_id}", step=change)
        await self._publish(run_id)

    async def _set_step(self, run_id: int, position: int, on_worker: str | None = None,
                        **changes: Any) -> None:
        """Change the step's rows (only the row of `on_worker`, when given)."""
        await self._change_steps(run_id, StepChange(position, on_worker, None,
                                                    set_fields(**changes)),
                                 f"step {position}")

    async def _end_position(self, run_id: int, position: int, status: str, reason: str,
                            runlog: RunLog) -> None:
        """The step at `position` was stopped: its rows that had not ended end now (a
        worker's finished result stays as it was)."""
        if position == 0:
            return
        await self._change_steps(run_id, StepChange(
            position, None, frozenset([RUNNING, QUEUED, WAITING]),
            set_fields(status=status, reason=reason, finished_at=utcnow())),
            f"step {position}")
        runlog.note(position, "", f"step {position} {status}: {reason}")

    async def _skip_failed(self, run_id: int, position: int, actor: str) -> None:
        """A failed step is skipped: its rows that did not succeed say so, with what went
        wrong; a worker's success stays as it was."""

        def skip(row: RunStep) -> None:
            row.reason = f"{row.status} ({row.reason}), then skipped by {actor}"
            row.status = SKIPPED

        await self._change_steps(run_id, StepChange(position, None, frozenset([FAILED, LOST]),
                                                    skip), f"step {position}")
