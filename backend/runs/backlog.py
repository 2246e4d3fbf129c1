"""A run's writes that the store has not taken yet, kept in order: an outcome is never
hidden behind a store fault.

What a run and its steps became, and the slots they give back, must reach the store. A
write is tried at once; when the store refuses it for a fault of its own (a full disk, a
database gone), it and every later write of the same run wait in the run's backlog and
are taken in order as soon as the store takes writes again, before held log lines. The
run goes on meanwhile, and whoever reads it is shown what its backlog will write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from backend.store.db import Store, fault_of, retrying
from backend.store.models import Run, RunStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepChange:
    """A change to a run's step rows: those at `position` (every position when None), on
    `worker` (any when None), with one of `statuses` (any when None); `apply` changes one
    row, stored or as shown."""

    position: int | None
    worker: str | None
    statuses: frozenset[str] | None
    apply: Callable[[RunStep], None]

    def matches(self, row: RunStep) -> bool:
        return ((self.position is None or row.position == self.position)
                and (self.worker is None or row.worker == self.worker)
                and (self.statuses is None or row.status in self.statuses))

    def write(self, store: Store, run_id: int) -> None:
        with store.write() as session:
            query = select(RunStep).where(RunStep.run_id == run_id)
            if self.position is not None:
                query = query.where(RunStep.position == self.position)
            for row in session.exec(query).all():
                if self.matches(row):
                    self.apply(row)
                    session.add(row)


def set_fields(**changes: Any) -> Callable[[Any], None]:
    def apply(row: Any) -> None:
        for key, value in changes.items():
            setattr(row, key, value)
    return apply


@dataclass
class _Entry:
    write: Callable[[], None]
    what: str
    run: dict[str, Any] = field(default_factory=dict)  # the run's fields it sets
    step: StepChange | None = None


class Backlog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: dict[int, deque[_Entry]] = {}
        self._drains: dict[int, asyncio.Task[None]] = {}
        # Told the run's id each time one of its waiting writes is stored.
        self.listeners: list[Callable[[int], Awaitable[Any]]] = []

    async def write(self, run_id: int, fn: Callable[[], None], *, what: str,
                    run: dict[str, Any] | None = None, step: StepChange | None = None
                    ) -> None:
        """Store `fn()` now, or after the run's earlier writes once the store takes them.

        `run` (the run's fields it sets) or `step` say what it changes, to be shown
        meanwhile. Errors that are not the store's fault are raised at once.
        """
        entries = self._entries.get(run_id)
        if not entries:
            try:
                await asyncio.to_thread(fn)
                return
            except Exception as exc:
                fault = fault_of(exc)
                if fault is None:
                    raise
                log.warning("run %s waits for the store (%s): its changes are shown as they "
                            "are meanwhile", run_id, fault)
                entries = self._entries[run_id] = deque()
                # Before held log lines: space freed on a full disk goes to outcomes first.
                self.store.urgent += 1
        entries.append(_Entry(fn, what, dict(run or {}), step))
        if run_id not in self._drains:
            self._drains[run_id] = asyncio.create_task(self._drain(run_id))

    def waiting(self, run_id: int) -> bool:
        return bool(self._entries.get(run_id))

    def shown(self, run: Run, steps: Iterable[RunStep]) -> None:
        """Show `run` and its `steps` (detached copies) as the backlog will leave them."""
        for entry in self._entries.get(run.id or 0, ()):
            for key, value in entry.run.items():
                setattr(run, key, value)
            if entry.step is not None:
                for row in steps:
                    if entry.step.matches(row):
                        entry.step.apply(row)

    async def settle(self, run_id: int) -> None:
        """Wait until the run's waiting writes are stored."""
        drain = self._drains.get(run_id)
        if drain is not None:
            await asyncio.shield(drain)

    async def _drain(self, run_id: int) -> None:
        entries = self._entries[run_id]
        try:
            while entries:
                entry = entries[0]
                await retrying(self.store, entry.write, what=entry.what)
                entries.popleft()
                for listener in self.listeners:
                    await listener(run_id)
        finally:
            del self._entries[run_id]
            del self._drains[run_id]
            self.store.urgent -= 1
