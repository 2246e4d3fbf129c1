"""Runs as stored and shown: read, their changes written (retried through a full data
directory, never dropped) and each change published to every console."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import select

from backend import fleet
from backend.errors import NotFound
from backend.events import EventBus
from backend.fleet import audit
from backend.runs.course import Waiting, run_public, run_summary
from backend.runs.logstore import RunLog
from backend.store.db import Store, write_retrying
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
    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self._waits: dict[int, Waiting] = {}
        self._moved: dict[int, asyncio.Event] = {}  # set when a run's state is published
        # The newest runs as last published, for consoles' snapshots (seeded on first use).
        self._recent: dict[int, dict[str, Any]] | None = None
        # Changes to runs that the store has not taken yet (a full disk): shown as they
        # are meanwhile, so that a run's outcome is never hidden behind a store fault.
        self._unstored: dict[int, dict[str, Any]] = {}

    # -------------------------------------------------------- queries (call in a thread)

    def get(self, run_id: int) -> dict[str, Any]:
        with self.store.read() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NotFound(f"No run has the id {run_id}.")
            steps = session.exec(select(RunStep).where(RunStep.run_id == run_id)).all()
            decisions = session.exec(select(Decision).where(Decision.run_id == run_id)
                                     .order_by(Decision.id)).all()
        return run_public(self._as_known(run), list(steps), self._waits.get(run_id),
                          list(decisions))

    def _as_known(self, run: Run) -> Run:
        """The run as the engine knows it: with the changes the store has not taken yet
        (on this detached copy only)."""
        for key, value in dict(self._unstored.get(run.id or 0, {})).items():
            setattr(run, key, value)
        return run

    def list(self, limit: int = 200, status: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as session:
            query = select(Run).order_by(Run.id.desc()).limit(limit)
            if status:
                query = query.where(Run.status == status)
            runs = session.exec(query).all()
        return [run_summary(run_public(self._as_known(r), [], self._waits.get(r.id)))
                for r in runs]

    # -------------------------------------------------------- publishing (on the loop)

    async def publish_worker(self, name: str) -> None:
        for worker in await asyncio.to_thread(fleet.list_workers, self.store, [name]):
            self.bus.publish("worker", name, worker)

    async def _publish(self, run_id: int) -> dict[str, Any] | None:
        try:
            current = await asyncio.to_thread(self.get, run_id)
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

    def _write_run(self, run_id: int, changes: dict[str, Any]) -> None:
        with self.store.write() as session:
            run = session.get(Run, run_id)
            for key, value in changes.items():
                setattr(run, key, value)
            session.add(run)

    def _write_step(self, run_id: int, position: int, on_worker: str | None,
                    changes: dict[str, Any]) -> None:
        with self.store.write() as session:
            query = select(RunStep).where(RunStep.run_id == run_id,
                                          RunStep.position == position)
            if on_worker is not None:
                query = query.where(RunStep.worker == on_worker)
            for step in session.exec(query).all():
                for key, value in changes.items():
                    setattr(step, key, value)
                session.add(step)

    async def _set_run(self, run_id: int, **changes: Any) -> None:
        # A run's state must reach the store: a full disk delays it, it is not dropped.
        # Meanwhile it is shown as it is, and it goes before the log's held lines.
        unstored = self._unstored.setdefault(run_id, {})
        unstored.update(changes)
        try:
            await write_retrying(self.store, self._write_run, run_id, changes,
                                 what=f"run {run_id}", urgent=True,
                                 on_wait=lambda: self._publish(run_id))
        finally:
            for key, value in changes.items():
                if key in unstored and unstored[key] is value:
                    del unstored[key]  # stored (a later change to it is not)
            if not unstored and self._unstored.get(run_id) is unstored:
                del self._unstored[run_id]
        await self._publish(run_id)

    async def _set_step(self, run_id: int, position: int, on_worker: str | None = None,
                        **changes: Any) -> None:
        """Change the step's rows (only the row of `on_worker`, when given)."""
        await write_retrying(self.store, self._write_step, run_id, position, on_worker,
                             changes, what=f"step {position} of run {run_id}", urgent=True)
        await self._publish(run_id)

    async def _end_position(self, run_id: int, position: int, status: str, reason: str,
                            runlog: RunLog) -> None:
        """The step at `position` was stopped: its rows that had not ended end now (a
        worker's finished result stays as it was)."""
        if position == 0:
            return

        def mark() -> None:
            with self.store.write() as session:
                for row in session.exec(select(RunStep).where(
                        RunStep.run_id == run_id, RunStep.position == position,
                        RunStep.status.in_([RUNNING, QUEUED, WAITING]))):
                    row.status = status
                    row.reason = reason
                    row.finished_at = utcnow()
                    session.add(row)

        await write_retrying(self.store, mark, what=f"step {position} of run {run_id}",
                             urgent=True)
        runlog.note(position, "", f"step {position} {status}: {reason}")
        await self._publish(run_id)

    async def _skip_failed(self, run_id: int, position: int, actor: str) -> None:
        """A failed step is skipped: its rows that did not succeed say so, with what went
        wrong; a worker's success stays as it was."""

        def mark() -> None:
            with self.store.write() as session:
                for row in session.exec(select(RunStep).where(
                        RunStep.run_id == run_id, RunStep.position == position,
                        RunStep.status.in_([FAILED, LOST]))):
                    row.reason = f"{row.status} ({row.reason}), then skipped by {actor}"
                    row.status = SKIPPED
                    session.add(row)

        await write_retrying(self.store, mark, what=f"step {position} of run {run_id}")
        await self._publish(run_id)
