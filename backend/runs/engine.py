"""The run engine: a run's steps in order, each on a worker leased from its pool.

Every state change is stored, then pushed to clients. Where the run waits for an
operator (step-through, guided failure, a manual step), the decision is stored with
who and when. Any end of a step other than its exit status coming back kills the step's
processes on the worker and checks they are gone; when that cannot be confirmed, its
slot stays taken as an orphan until the reaper has killed them (backend.orphans).

Everything here runs on the event loop; the store is only ever touched in threads, and
events are published on the loop once a write is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from backend import fleet
from backend.errors import Conflict, InvalidInput, NotFound
from backend.events import EventBus
from backend.fleet import audit, iso
from backend.fleet.validation import free_text
from backend.runs.launch import prepare, resolve_pool
from backend.runs.leases import Granted, Leases, NoWorker
from backend.runs.logstore import LogHub, LogStoreFull, RunLog, last_seq
from backend.runs.vault import Vault
from backend.store.db import DATA_DIR_FULL, Store, write_retrying
from backend.store.models import (
    CANCELLED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    LOST,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    WAITING,
    Decision,
    Run,
    RunStep,
    utcnow,
)
from backend.transport.remote import (
    LocalTransport,
    SSHTransport,
    StepProcess,
    StepResult,
    Transport,
    new_marker,
    run_step,
    script_text,
)
from backend.transport.ssh import ConnectionPool, SSHFailure
from wire.runbook import RunbookDef, Step
from wire.runs import DecisionRequest, LaunchRequest

log = logging.getLogger(__name__)

STEP_ACTIONS = {"continue", "skip", "abort"}
FAILURE_ACTIONS = {"retry", "skip", "abort"}
MANUAL_ACTIONS = {"approve", "abort"}
RECENT_RUNS = 200  # runs a console's snapshot carries; older ones are a `GET /api/runs` away
RETRY_WAIT_FIRST_S = 1.0  # an automatic retry waits this long, doubled each time
RETRY_WAIT_MAX_S = 60.0
SHUTDOWN_WAIT_S = 15.0  # a stopping server gives its runs this long to kill their steps


@dataclass
class _RunState:
    """How a run's course went so far, which decides what its next steps do.

    After a failure, an abort or a first cancel, only the steps whose condition is
    "failure" or "always" run (the cleanup); an abort during the cleanup, or a second
    cancel, stops the cleanup too."""

    position: int = 0
    failed: bool = False
    aborted_at: str = ""  # "step 3 (Restart)" once an operator aborted there
    aborted_by: str = ""
    cancelled_by: str = ""
    cancels: int = 0
    halted: bool = False  # nothing more runs
    activity: asyncio.Future[str] | None = None  # the current step's work
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set when one begins
    parked: bool = False  # the server stopped while the run waited: it waits on after

    SAVED = ("position", "failed", "aborted_at", "aborted_by", "cancelled_by", "cancels",
             "halted")

    def saved(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SAVED}

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> _RunState:
        return cls(**{name: saved[name] for name in cls.SAVED if name in saved})

    @property
    def stopped(self) -> str:
        """Why only cleanup steps run now: "aborted", "cancelled" or ""."""
        return "cancelled" if self.cancels else "aborted" if self.aborted_at else ""

    def wants(self, condition: str) -> bool:
        if self.halted:
            return False
        if condition == "always":
            return True
        went_wrong = self.failed or bool(self.stopped)
        return went_wrong if condition == "failure" else not went_wrong

    def skip_reason(self, condition: str) -> str:
        if self.halted or self.stopped:
            return f"not run: the run was {self.stopped}"
        return f"condition {condition!r} not met"

    def abort(self, position: int, step: Step) -> None:
        if self.stopped:
            self.halted = True  # an abort during the cleanup ends it
        if not self.aborted_at:
            self.aborted_at = f"step {position} ({step.name})"

    def outcome(self) -> tuple[str, str]:
        if self.cancels:
            return CANCELLED, f"cancelled by {self.cancelled_by}"
        if self.aborted_at:
            by = f" by {self.aborted_by}" if self.aborted_by else ""
            return FAILED, f"aborted{by} at {self.aborted_at}"
        if self.failed:
            return FAILED, "a step failed"
        return SUCCEEDED, ""


@dataclass
class _Waiting:
    position: int
    actions: set[str]
    prompt: str
    future: asyncio.Future[tuple[str, str, str]]


# ---------------------------------------------------------------- public shapes


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A run as lists carry it: without its steps and decisions (`GET /api/runs/ID` has
    them), so that a list of runs stays small however long their runbooks are."""
    return {key: value for key, value in run.items() if key not in ("steps", "decisions")}


def run_public(run: Run, steps: list[RunStep], waiting: _Waiting | None = None,
               decisions: list[Decision] | None = None) -> dict[str, Any]:
    definition = json.loads(run.definition)
    shown = {} if decisions is None else {"decisions": [
        {"at": iso(d.at), "actor": d.actor, "action": d.action, "position": d.position,
         "note": d.note} for d in decisions]}
    return {**shown, "step_count": len(definition["steps"]),
        "id": run.id, "runbook": run.runbook, "environment": run.environment,
        "status": run.status, "reason": run.reason, "guided": run.guided,
        "step_through": run.step_through, "actor": run.actor,
        "created_at": iso(run.created_at), "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at), "variables": json.loads(run.variables),
        "sensitive": [v["name"] for v in definition["variables"] if v["sensitive"]],
        "steps": [
            {"position": s.position, "name": s.name, "worker": s.worker, "status": s.status,
             "reason": s.reason, "attempt": s.attempt, "exit_status": s.exit_status,
             "started_at": iso(s.started_at), "finished_at": iso(s.finished_at),
             "manual": definition["steps"][s.position - 1].get("manual")}
            for s in sorted(steps, key=lambda s: (s.position, s.worker))
        ],
        "waiting": None if waiting is None else {
            "position": waiting.position, "actions": sorted(waiting.actions),
            "prompt": waiting.prompt},
    }


# ---------------------------------------------------------------- the engine


class RunEngine:
    def __init__(self, store: Store, connections: ConnectionPool, bus: EventBus, vault: Vault,
                 hub: LogHub, checker: Any, leases: Leases) -> None:
        self.store = store
        self.connections = connections
        self.bus = bus
        self.vault = vault
        self.hub = hub
        self.checker = checker
        self.leases = leases
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._waits: dict[int, _Waiting] = {}
        self._states: dict[int, _RunState] = {}  # runs under way
        self._resumable: dict[int, dict[str, Any]] = {}  # found waiting at start
        self._moved: dict[int, asyncio.Event] = {}  # set when a run's state is published
        self._stopping = False
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
        return run_public(run, list(steps), self._waits.get(run_id), list(decisions))

    def list(self, limit: int = 200, status: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as session:
            query = select(Run).order_by(Run.id.desc()).limit(limit)
            if status:
                query = query.where(Run.status == status)
            runs = session.exec(query).all()
        return [run_summary(run_public(r, [], self._waits.get(r.id))) for r in runs]

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

    # -------------------------------------------------------- lifecycle

    def recover(self) -> int:
        """At start: runs the last server left unfinished are interrupted, not running.

        Their steps' processes may live on: their leases stay, as orphans, until the
        reaper has killed what is left (or seen it gone)."""
        self.leases.recover("the server stopped during this step")
        with self.store.write() as session:
            runs = session.exec(select(Run).where(Run.status.in_(
                [QUEUED, RUNNING, WAITING]))).all()
            # A run that waited for a decision ran nothing meanwhile: it waits on.
            self._resumable = {run.id: json.loads(run.waiting) for run in runs
                               if run.status == WAITING and run.waiting}
            runs = [run for run in runs if run.id not in self._resumable]
            for run in runs:
                run.reason = f"the server stopped while this run was {run.status}"
                run.status = INTERRUPTED
                run.finished_at = utcnow()
                run.secrets = ""  # it can never be retried: its sealed values go
                session.add(run)
                for step in session.exec(select(RunStep).where(
                        RunStep.run_id == run.id, RunStep.status.in_([RUNNING, QUEUED]))):
                    if step.status == RUNNING:
                        step.status = INTERRUPTED
                        step.reason = "the server stopped during this step"
                        step.finished_at = utcnow()
                        session.add(step)
        return len(runs)

    def resume_waiting(self) -> None:
        """At start, once serving: the runs that waited for a decision ask for it again."""
        resumable, self._resumable = self._resumable, {}
        for run_id, resume in resumable.items():
            self._states[run_id] = _RunState.restored(resume["state"])
            self._start(run_id, resume)

    def _start(self, run_id: int, resume: dict[str, Any] | None = None) -> None:
        task = asyncio.create_task(self._execute(run_id, resume))
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    async def shutdown(self) -> None:
        """The server stops: interrupt every run, killing its steps' processes; a run
        waiting for a decision stays waiting, stored, for the next server."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)

    async def launch(self, request: LaunchRequest, actor: str) -> dict[str, Any]:
        definition, environment, values, secrets, _pools = await asyncio.to_thread(
            prepare, self.store, request)

        def create() -> int:
            with self.store.write() as session:
                run = Run(runbook=definition.name, environment=environment,
                          definition=definition.model_dump_json(),
                          variables=json.dumps(values), secrets=self.vault.seal(secrets),
                          guided=request.guided, step_through=request.step_through,
                          actor=actor)
                session.add(run)
                session.flush()
                for position, step in enumerate(definition.steps, 1):
                    session.add(RunStep(run_id=run.id, position=position, name=step.name))
                audit(session, actor, "run.launch", f"run {run.id}",
                      f"{definition.name} on {environment}")
                return run.id

        run_id = await asyncio.to_thread(create)
        self._states[run_id] = _RunState()  # a cancel may come before the task starts
        self._start(run_id)
        return await self._publish(run_id) or await asyncio.to_thread(self.get, run_id)

    async def cancel(self, run_id: int, actor: str) -> dict[str, Any]:
        current = await asyncio.to_thread(self.get, run_id)
        if current["status"] in FINISHED:
            raise Conflict(f"Run {run_id} already {current['status']}.")
        await asyncio.to_thread(self._record, run_id, None, "cancel", actor, "")
        state = self._states.get(run_id)
        if state is not None:
            # The first cancel stops the current step and leaves the cleanup steps to run;
            # a second one stops those too.
            state.cancels += 1
            state.cancelled_by = state.cancelled_by or actor
            if state.cancels > 1:
                state.halted = True
            state.started.clear()
            activity = state.activity
            if activity is not None:
                activity.cancel()
                await asyncio.wait({activity}, timeout=30)
            # Answer once the run has ended or gone on to a cleanup step, not in between.
            task = self._tasks.get(run_id)
            if task is not None:
                went_on = asyncio.ensure_future(state.started.wait())
                await asyncio.wait({task, went_on}, timeout=30,
                                   return_when=asyncio.FIRST_COMPLETED)
                went_on.cancel()
        return await asyncio.to_thread(self.get, run_id)

    async def decide(self, run_id: int, request: DecisionRequest, actor: str) -> dict[str, Any]:
        waiting = self._waits.get(run_id)
        if waiting is None:
            raise Conflict(f"Run {run_id} is not waiting for a decision.")
        if request.action not in waiting.actions:
            raise InvalidInput(f"Run {run_id} is waiting for "
                               f"{' or '.join(sorted(waiting.actions))}, not {request.action!r}.")
        note = free_text(request.note, 1000, one_line=True)
        await asyncio.to_thread(self._record, run_id, waiting.position, request.action, actor,
                                note)
        if not waiting.future.done():
            waiting.future.set_result((request.action, actor, note))
        return await self._moved_on(run_id, waiting)

    async def _moved_on(self, run_id: int, left: _Waiting, timeout: float = 10.0
                        ) -> dict[str, Any]:
        """The run as it is once it has acted on a decision: ended, waiting for the next
        one, or with a step under way (or as it is after `timeout` seconds)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            current = await asyncio.to_thread(self.get, run_id)
            waits = self._waits.get(run_id)
            if current["finished_at"] or (waits is not None and waits is not left) or any(
                    s["status"] == RUNNING or (s["status"] == QUEUED and s["reason"])
                    for s in current["steps"]):
                return current
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return current
            moved = self._moved.setdefault(run_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), remaining)

    def _record(self, run_id: int, position: int | None, action: str, actor: str,
                note: str) -> None:
        with self.store.write() as session:
            session.add(Decision(run_id=run_id, position=position, action=action, actor=actor,
                                 note=note))
            audit(session, actor, f"run.{action}", f"run {run_id}",
                  (f"step {position}" if position else "") + (f": {note}" if note else ""))

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
        await write_retrying(self.store, self._write_run, run_id, changes,
                             what=f"run {run_id}")
        await self._publish(run_id)

    async def _set_step(self, run_id: int, position: int, on_worker: str | None = None,
                        **changes: Any) -> None:
        """Change the step's rows (only the row of `on_worker`, when given)."""
        await write_retrying(self.store, self._write_step, run_id, position, on_worker,
                             changes, what=f"step {position} of run {run_id}")
        await self._publish(run_id)

    # -------------------------------------------------------- execution

    async def _wait_for(self, run_id: int, position: int, actions: set[str], prompt: str,
                        runlog: RunLog, state: _RunState, kind: str,
                        **where: Any) -> tuple[str, str, str]:
        """Wait for an operator's decision; the log says what was asked and what was
        decided, by whom.

        What it waits for and where the run's course stands are stored with the run
        (`kind` and `where` say how to come back to this question), so that a server
        stopped meanwhile asks it again once started."""
        future: asyncio.Future[tuple[str, str, str]] = asyncio.get_running_loop().create_future()
        self._waits[run_id] = _Waiting(position, actions, prompt, future)
        resume = {"kind": kind, "position": position, "state": state.saved(), **where}
        await self._set_run(run_id, status=WAITING, reason=prompt, waiting=json.dumps(resume))
        runlog.note(position, "", f"waiting for an operator: {prompt}")
        try:
            action, actor, note = await future
            runlog.note(position, "", f"{action}, decided by {actor}" +
                        (f": {note}" if note else ""))
            return action, actor, note
        except asyncio.CancelledError:
            if self._stopping:
                state.parked = True
            raise
        finally:
            self._waits.pop(run_id, None)
            if not state.parked:
                await asyncio.shield(self._set_run(run_id, status=RUNNING, reason="",
                                                   waiting=""))

    def _load(self, run_id: int) -> tuple[Run, dict[str, str], int]:
        with self.store.read() as session:
            run = session.get(Run, run_id)
        return run, self.vault.open(run.secrets), last_seq(self.store, run_id)

    async def _execute(self, run_id: int, resume: dict[str, Any] | None = None) -> None:
        """Run a run's steps from the first; or, with `resume` (what a run waited for when
        the server stopped), from that question on."""
        run, secrets, seen = await asyncio.to_thread(self._load, run_id)
        definition = RunbookDef.model_validate_json(run.definition)
        variables = json.loads(run.variables) | secrets
        runlog = RunLog(self.store, self.hub, run_id, secrets=list(secrets.values()),
                        next_seq=seen + 1)
        runlog.start()
        state = self._states.setdefault(run_id, _RunState())
        final, reason = SUCCEEDED, ""
        try:
            first = 1
            if resume is None:
                await self._set_run(run_id, status=RUNNING, started_at=utcnow())
            else:
                first = resume["position"]
                runlog.note(first, "", "the server started again: the run waits on")
            for position, step in enumerate(definition.steps, 1):
                if position >= first:
                    await self._one_step(run_id, run, definition, position, step, variables,
                                         runlog, state,
                                         resume if position == first else None)
            final, reason = state.outcome()
        except asyncio.CancelledError:
            # Only a stopping server cancels the run itself (a cancel stops its activity).
            if state.parked:
                # It waited for a decision: it waits on, stored, for the next server.
                runlog.note(state.position, "", "the server stopped; the run still waits "
                                                "and will ask again once it is started")
                await asyncio.shield(runlog.close(deadline_s=SHUTDOWN_WAIT_S))
                self._states.pop(run_id, None)
                return
            final, reason = INTERRUPTED, "the server was stopped during this run"
            await asyncio.shield(self._end_position(
                run_id, state.position, INTERRUPTED, "the server was stopped", runlog))
        except Exception as exc:  # a bug must end the run visibly, not leave it running
            log.exception("run %s failed", run_id)
            final, reason = FAILED, free_text(f"internal error: {exc}", 500, one_line=True)
        self._states.pop(run_id, None)
        await asyncio.shield(self._finish(run_id, runlog, final, reason))

    async def _one_step(self, run_id: int, run: Run, definition: RunbookDef, position: int,
                        step: Step, variables: dict[str, str], runlog: RunLog,
                        state: _RunState, resume: dict[str, Any] | None = None) -> None:
        """Run step `position` if the run's course so far wants it; record why not."""
        state.position = position
        if not state.wants(step.condition):
            await self._set_step(run_id, position, status=SKIPPED,
                                 reason=state.skip_reason(step.condition))
            return
        # The step's work (the step-through question included) is a task of its own, so
        # that a cancel stops it and the run goes on with its cleanup steps.
        activity = asyncio.ensure_future(self._step_activity(
            run_id, run, definition, position, step, variables, runlog, state, resume))
        state.activity = activity
        state.started.set()
        try:
            outcome = await asyncio.shield(activity)
        except asyncio.CancelledError:
            if not activity.done():  # the run itself is being stopped: so is the step
                activity.cancel()
                await asyncio.wait({activity})
                raise
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            await self._end_position(run_id, position, CANCELLED,
                                     f"cancelled by {state.cancelled_by}", runlog)
            if not state.halted:
                await self._set_run(run_id, reason=f"cancelled by {state.cancelled_by}: its "
                                                   "cleanup steps run first")
            return
        finally:
            state.activity = None
        if outcome == "abort":
            state.abort(position, step)
        elif outcome == FAILED:
            state.failed = True

    async def _step_activity(self, run_id: int, run: Run, definition: RunbookDef,
                             position: int, step: Step, variables: dict[str, str],
                             runlog: RunLog, state: _RunState,
                             resume: dict[str, Any] | None = None) -> str:
        failed_before = resume if resume is not None and resume["kind"] == "failure" else None
        if run.step_through and failed_before is None:
            action, actor, _note = await self._wait_for(
                run_id, position, STEP_ACTIONS,
                f"step {position} ({step.name}) is next: continue, skip or abort", runlog,
                state, "step-through")
            if action == "skip":
                await self._set_step(run_id, position, status=SKIPPED,
                                     reason=f"skipped by {actor}")
                return SKIPPED
            if action == "abort":
                state.aborted_by = state.aborted_by or actor
                await self._set_step(run_id, position, status=SKIPPED,
                                     reason=f"not run: aborted by {actor}")
                return "abort"
        return await self._run_step(run_id, run, definition, position, step, variables,
                                    runlog, state, failed_before)

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

        await write_retrying(self.store, mark, what=f"step {position} of run {run_id}")
        runlog.note(position, "", f"step {position} {status}: {reason}")
        await self._publish(run_id)

    async def _finish(self, run_id: int, runlog: RunLog, status: str, reason: str) -> None:
        def not_reached() -> None:
            with self.store.write() as session:
                for step in session.exec(select(RunStep).where(
                        RunStep.run_id == run_id, RunStep.status.in_([QUEUED, WAITING]))):
                    step.status = SKIPPED
                    step.reason = f"not run: the run {status}"
                    session.add(step)

        await write_retrying(self.store, not_reached, what=f"the steps of run {run_id}")
        await self.leases.release_run(run_id)
        await runlog.close(deadline_s=SHUTDOWN_WAIT_S if self._stopping else None)
        # The run ends here: nothing can retry it, so its sealed values go.
        await self._set_run(run_id, status=status, reason=reason, finished_at=utcnow(),
                            output_bytes=runlog.output_bytes, secrets="", waiting="")
        self.hub.forget(run_id)
        self.hub.notify(run_id)

    async def _run_step(self, run_id: int, run: Run, definition: RunbookDef, position: int,
                        step: Step, variables: dict[str, str], runlog: RunLog,
                        state: _RunState, failed_before: dict[str, Any] | None = None) -> str:
        """Run one step to its end; return SUCCEEDED, FAILED, SKIPPED or "abort".

        `failed_before`: the step had failed and waited for a guided decision when the
        server stopped; it asks again, with its attempts and failed workers as they were."""
        if step.manual is not None:
            await self._set_step(run_id, position, status=WAITING, started_at=utcnow(),
                                 reason=step.manual)
            action, actor, note = await self._wait_for(
                run_id, position, MANUAL_ACTIONS, f"manual step {position}: {step.manual}",
                runlog, state, "manual")
            status = SUCCEEDED if action == "approve" else FAILED
            said = f"{action}d by {actor}" if action == "approve" else f"aborted by {actor}"
            await self._set_step(run_id, position, status=status, finished_at=utcnow(),
                                 reason=said + (f": {note}" if note else ""))
            if action == "abort":
                state.aborted_by = state.aborted_by or actor
            return SUCCEEDED if action == "approve" else "abort"

        pool = resolve_pool(definition, step, run.environment)
        before = failed_before or {}
        attempt: int = before.get("attempt", 0)
        again: list[str] | None = before.get("again")  # an "all" step's workers to run again
        # Where a step on any worker just failed.
        avoid: frozenset[str] = frozenset(before.get("avoid", ()))
        failed = failed_before is not None
        while True:
            if not failed:
                attempt += 1
                status, failed_on = await self._attempt(run_id, position, step, pool,
                                                        variables, runlog, attempt, again,
                                                        avoid)
                if status == SUCCEEDED:
                    return SUCCEEDED
                if step.run_on == "all":
                    again = failed_on or again  # a retry is for the workers it failed on
                else:
                    avoid = frozenset(failed_on)  # a retry goes elsewhere when it can
                if attempt <= step.retries:
                    wait = min(RETRY_WAIT_MAX_S, RETRY_WAIT_FIRST_S * 2 ** (attempt - 1))
                    where = (f" on {', '.join(again)}" if step.run_on == "all" and again
                             else f" on another worker than {', '.join(avoid)} if one is "
                             "free" if avoid else "")
                    runlog.note(position, "", f"attempt {attempt} {status}; retrying{where} "
                                              f"in {wait:g}s ({step.retries - attempt + 1} "
                                              "retries left)")
                    await asyncio.sleep(wait)
                    continue
                if not run.guided:
                    return FAILED
            failed = False
            action, actor, _note = await self._wait_for(
                run_id, position, FAILURE_ACTIONS,
                f"step {position} ({step.name}) failed: retry, skip or abort", runlog,
                state, "failure", attempt=attempt, again=again, avoid=sorted(avoid))
            if action == "retry":
                continue
            if action == "skip":
                await self._skip_failed(run_id, position, actor)
                return SKIPPED
            state.aborted_by = state.aborted_by or actor
            return "abort"

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

    async def _attempt(self, run_id: int, position: int, step: Step, pool: str,
                       variables: dict[str, str], runlog: RunLog, attempt: int,
                       again: list[str] | None, avoid: frozenset[str]
                       ) -> tuple[str, list[str]]:
        """One attempt at a step; its status and the workers it failed on."""
        if step.run_on != "all":
            status, worker = await self._on_worker(run_id, position, step, pool, None,
                                                   variables, runlog, attempt, avoid)
            return status, [worker] if worker and status != SUCCEEDED else []
        if again is not None:
            workers = again
        else:
            workers, unable = await asyncio.to_thread(self.leases.every_member, pool)
            refused = await self._fan_out(run_id, position, step, pool, workers, unable,
                                          runlog)
            if refused:
                return FAILED, []
        results = await asyncio.gather(*(
            self._on_worker(run_id, position, step, pool, worker, variables, runlog, attempt)
            for worker in workers))
        failed_on = [w for w, (r, _) in zip(workers, results, strict=True) if r != SUCCEEDED]
        return (FAILED if failed_on else SUCCEEDED), failed_on

    async def _fan_out(self, run_id: int, position: int, step: Step, pool: str,
                       workers: list[str], unable: list[tuple[str, str]], runlog: RunLog
                       ) -> bool:
        """Rows for a `run_on = "all"` step: one per member, the members that cannot take
        it skipped with why. True when the step cannot run at all (no member can, or it
        requires all and some cannot): then it has failed, and says why."""
        missing = ", ".join(f"{name} ({why})" for name, why in unable)
        if not workers:
            refusal = f"Pool {pool!r} has no member that can take the step" + \
                (f": {missing}" if missing else " (it has no members)")
        elif step.require_all and unable:
            refusal = f"the step requires every member of {pool}, and these cannot take it: " \
                      f"{missing}"
        else:
            refusal = ""

        def write() -> None:
            with self.store.write() as session:
                rows = session.exec(select(RunStep).where(RunStep.run_id == run_id,
                                                          RunStep.position == position)).all()
                for row in rows:
                    session.delete(row)
                session.flush()
                now = utcnow()
                for name in workers:
                    session.add(RunStep(
                        run_id=run_id, position=position, name=step.name, worker=name,
                        **({"status": SKIPPED, "reason": "not run: " + refusal}
                           if refusal else {})))
                for name, why in unable:
                    session.add(RunStep(
                        run_id=run_id, position=position, name=step.name, worker=name,
                        status=FAILED if refusal else SKIPPED,
                        reason=(f"cannot take the step: {why}" if refusal else
                                f"not run on it: {why}"),
                        finished_at=now if refusal else None))
                if not workers and not unable:
                    session.add(RunStep(run_id=run_id, position=position, name=step.name,
                                        status=FAILED, reason=refusal, finished_at=now))

        await write_retrying(self.store, write, what=f"step {position} of run {run_id}")
        if refusal:
            runlog.note(position, "", f"step {position} failed: {refusal}")
        else:
            runlog.note(position, "", f"step {position} runs on {', '.join(workers)}" +
                        (f"; not on {missing}" if missing else ""))
        await self._publish(run_id)
        return bool(refusal)

    async def _on_worker(self, run_id: int, position: int, step: Step, pool: str,
                         only: str | None, variables: dict[str, str], runlog: RunLog,
                         attempt: int, avoid: frozenset[str] = frozenset()
                         ) -> tuple[str, str]:
        """The step on one worker (`only`, or any of the pool's); its status and the
        worker it ran on ("" when it got none)."""
        row = only if only is not None else None
        told: list[asyncio.Task[None]] = []

        def waiting() -> None:  # called on the loop by the queue, once
            runlog.note(position, only or "", f"waiting for a free slot in {pool}")
            told.append(asyncio.ensure_future(self._set_step(
                run_id, position, row, status=QUEUED,
                reason=f"waiting for a free slot in {pool}")))

        try:
            granted = await self.leases.acquire(pool, run_id, position, step=step.name,
                                                only=only, on_wait=waiting, avoid=avoid)
        except NoWorker as exc:
            # Only this worker's row (all of the step's, for a step on any worker): the
            # other workers' results stand.
            if told:
                await asyncio.gather(*told)
            runlog.note(position, only or "", str(exc))
            await self._set_step(run_id, position, row, status=FAILED, reason=str(exc),
                                 finished_at=utcnow(), attempt=attempt)
            return FAILED, ""
        if told:
            await asyncio.gather(*told)
        worker = granted.worker
        process = StepProcess(new_marker())
        ended_clean = False
        try:
            # Known before anything starts: a server that dies from here on can find the
            # step's processes by their marker.
            await self.leases.record_process(granted.lease_id, process)
            await self.publish_worker(worker)  # its slots in use changed
            if row is None:
                await self._set_step(run_id, position, None, worker=worker)
            await self._set_step(run_id, position, worker, status=RUNNING,
                                 reason=granted.reason, attempt=attempt, started_at=utcnow(),
                                 finished_at=None, exit_status=None)
            runlog.note(position, worker, f"step {position} ({step.name}) attempt {attempt} "
                                          f"on {granted.reason}")
            try:
                transport = await self.transport_for(worker)
            except SSHFailure as exc:
                reason = f"cannot reach {worker}: {exc}"
                runlog.note(position, worker, reason)
                await self._set_step(run_id, position, worker, status=FAILED, reason=reason,
                                     finished_at=utcnow())
                ended_clean = True  # nothing was started
                await self._recheck(worker, runlog, position)
                return FAILED, worker
            target = (await asyncio.to_thread(self.checker.targets, [worker]))[0]
            env = {**variables, "WORKDECK_RUN_ID": str(run_id),
                   "WORKDECK_STEP": step.name, "WORKDECK_WORKER": worker}
            recorded: list[asyncio.Task[None]] = []
            try:
                result = await run_step(
                    transport, script_text(step.script, env, target.work_dir),
                    image=step.container, timeout=step.timeout, process=process,
                    output=lambda stream, data: runlog.output(position, worker, stream, data),
                    on_started=lambda found: recorded.append(asyncio.ensure_future(
                        self.leases.record_process(granted.lease_id, found))))
            except LogStoreFull as exc:
                result = StepResult(None, f"{exc}: the step was stopped", killed=None)
            finally:
                await asyncio.shield(asyncio.gather(*recorded))
            # Any end but an exit status ran kill_group in run_step: it says if they died.
            ended_clean = result.exit_status is not None or process.gone is True
            runlog.end_stream(position, worker)  # an unfinished last line counts too
            status, reason = self._outcome(result, ended_clean,
                                           runlog.last_stderr.pop((position, worker), ""))
            runlog.note(position, worker, f"step {position} {status}: {reason}")
            # A step that went well keeps why its worker was chosen; one that did not says
            # what went wrong.
            await self._set_step(run_id, position, worker, status=status, finished_at=utcnow(),
                                 reason=granted.reason if status == SUCCEEDED else reason,
                                 exit_status=result.exit_status)
            if status == LOST:  # the connection went: is the worker still there?
                await self._recheck(worker, runlog, position)
            return status, worker
        finally:
            # Cancelled or failed here: run_step killed the group (process.gone says).
            ended_clean = ended_clean or process.gone is True
            await asyncio.shield(self._give_back(granted, ended_clean, worker))

    async def _recheck(self, worker: str, runlog: RunLog, position: int) -> None:
        """A step could not reach its worker: check it now, so that its state says so and
        the next step (or retry) does not pick it while it is down."""
        try:
            [checked] = await self.checker.check_now([worker]) or [None]
        except Exception:  # the step's own failure is what matters here
            log.exception("rechecking %s after a failed connection failed", worker)
            return
        if checked is not None:
            runlog.note(position, worker, f"{worker} checked again: {checked['status']}" +
                        (f" ({checked['reason']})" if checked.get("reason") else ""))

    @staticmethod
    def _outcome(result: StepResult, gone: bool, last_stderr: str = "") -> tuple[str, str]:
        if result.exit_status == 0:
            return SUCCEEDED, "exit status 0"
        if result.exit_status is not None:
            # The step's last error line says more than its number.
            return FAILED, f"exit status {result.exit_status}" + (
                f": {last_stderr}" if last_stderr else "")
        reason = result.reason
        if not gone:
            reason += "; its processes may still run: the slot stays taken until they are " \
                      "killed"
        if result.timed_out or DATA_DIR_FULL in result.reason:
            return FAILED, reason
        return LOST, reason

    async def _give_back(self, granted: Granted, clean: bool, worker: str) -> None:
        """The step is over: its slot goes back, or stays as an orphan when its processes
        may still run (a lost connection, a kill that could not be confirmed)."""
        if clean:
            await self.leases.release(granted.lease_id)
        else:
            await self.leases.orphan(granted.lease_id, "the step ended without its processes "
                                                       "being seen gone")
        await self.publish_worker(worker)

    async def transport_for(self, worker: str) -> Transport:
        target = (await asyncio.to_thread(self.checker.targets, [worker]))[0]
        if target.builtin:
            return LocalTransport()
        conn = await self.connections.connection(target.name, target.endpoint, timeout=30)
        return SSHTransport(conn)
