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
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlmodel import select

from backend.errors import Conflict, Forbidden, InvalidInput, Unavailable, WorkdeckError
from backend.events import EventBus, woken
from backend.fanout import Fanout
from backend.fleet import audit
from backend.fleet.validation import free_text
from backend.nodes import Fenced
from backend.runs import requests
from backend.runs.attempts import StepAttempts
from backend.runs.backlog import StepChange, set_fields
from backend.runs.claims import cancel_unclaimed, claim_queued, take_over
from backend.runs.course import (
    FAILURE_ACTIONS,
    MANUAL_ACTIONS,
    STEP_ACTIONS,
    RunState,
    Waiting,
)
from backend.runs.launch import prepare, resolve_pool
from backend.runs.leases import Leases
from backend.runs.loghub import LogHub
from backend.runs.logstore import RunLog, last_seq
from backend.runs.rerun import Rerun
from backend.runs.vault import Vault
from backend.store.db import Store, pass_failed, retrying
from backend.store.models import (
    CANCELLED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    WAITING,
    Environment,
    Run,
    RunRequest,
    RunStep,
    utcnow,
)
from backend.transport.reach import Reach
from wire.runbook import RunbookDef, Step
from wire.runs import DecisionRequest, LaunchRequest

log = logging.getLogger(__name__)

RETRY_WAIT_FIRST_S = 1.0  # an automatic retry waits this long, doubled each time
RETRY_WAIT_MAX_S = 60.0
SHUTDOWN_WAIT_S = 15.0  # a stopping server gives its runs this long to kill their steps
CLAIM_S = 1.0  # runs nobody claimed, and requests, are looked for this often anyway
REQUEST_WAIT_S = 30.0  # how long a node waits for another to act on a request
REQUEST_LOOK_S = 0.25


class RunEngine(StepAttempts):
    def __init__(self, store: Store, reach: Reach, bus: EventBus, vault: Vault,
                 hub: LogHub, checker: Any, leases: Leases, fanout: Fanout | None = None
                 ) -> None:
        super().__init__(store, bus, leases.backlog, fanout)
        self.reach = reach
        self.vault = vault
        self.hub = hub
        self.checker = checker
        self.leases = leases
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._states: dict[int, RunState] = {}  # runs under way
        self._resumable: dict[int, dict[str, Any]] = {}  # found waiting at start
        self._stopping = False
        # This node, among those sharing the store (backend/nodes.py), and whether it
        # takes new runs now (not while draining).
        self.node = ""
        self.takes_runs: Callable[[], bool] = lambda: True
        self._claim_wake = asyncio.Event()
        self._acting: set[int] = set()  # other nodes' requests being acted on
        self.finish_listeners: list[Callable[[int], None]] = []  # told a run's id at its end
        self.wait_listeners: list[Callable[[int], None]] = []  # told when a run waits

    # -------------------------------------------------------- lifecycle

    def recover(self) -> int:
        """At start: runs this node left unfinished when it stopped are interrupted, not
        running (runs of other nodes are theirs; the leader takes over a gone node's).

        Their steps' processes may live on: their leases stay, as orphans, until the
        reaper has killed what is left (or seen it gone)."""
        mine = [self.node, ""]  # "": the runs of a store from before nodes
        self.leases.recover("the server stopped during this step", mine)
        with self.store.write() as session:
            runs = session.exec(select(Run).where(Run.status.in_(
                [QUEUED, RUNNING, WAITING]), Run.node.in_(mine))).all()
            # Claimed by nobody yet: claimed as any other (claim_forever).
            runs = [run for run in runs if run.node or run.status != QUEUED]
            # A run that waited for a decision ran nothing meanwhile: it waits on.
            self._resumable = {run.id: json.loads(run.waiting) for run in runs
                               if run.status == WAITING and run.waiting}
            for run in runs:
                run.node = self.node
                session.add(run)
            runs = [run for run in runs if run.id not in self._resumable]
            for run in runs:
                run.reason = f"the server stopped while this run was {run.status}"
                run.status = INTERRUPTED
                run.log_closed = True
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
            self._states[run_id] = RunState.restored(resume["state"])
            self._start(run_id, resume)

    def _start(self, run_id: int, resume: dict[str, Any] | None = None) -> None:
        task = asyncio.create_task(self._execute(run_id, resume))
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    def under_way(self) -> int:
        return len(self._tasks)

    async def shutdown(self) -> None:
        """The server stops: interrupt every run, killing its steps' processes; a run
        waiting for a decision stays waiting, stored, for the next server."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)

    # -------------------------------------------------------- runs among nodes

    def claim_wake(self) -> None:
        self._claim_wake.set()

    async def claim_forever(self) -> None:
        """Act on what other nodes asked of this node's runs; claim and start the runs
        nobody claimed (launched on a draining node, or given back by a takeover), while
        this node takes runs."""
        while True:
            self._claim_wake.clear()
            try:
                await self._act_on_requests()
            except Exception:
                pass_failed(log, "acting on other nodes' requests failed")
            if not self._stopping and self.takes_runs():
                try:
                    claimed = await asyncio.to_thread(claim_queued, self.store, self.node)
                except Exception:
                    pass_failed(log, "claiming runs failed")
                    claimed = []
                for run_id in claimed:
                    log.info("run %s claimed by node %s", run_id, self.node)
                    self._states[run_id] = RunState()
                    self._start(run_id)
                    await self._publish(run_id)
            await woken(self._claim_wake, CLAIM_S)

    async def take_over(self, gone: str) -> None:
        """What node `gone` left unfinished becomes this node's (backend/runs/claims.py)."""
        done = await asyncio.to_thread(take_over, self.store, gone, self.node)
        if not (done.interrupted or done.adopted or done.requeued):
            return
        log.warning("took over from node %s (%s): %d runs interrupted, %d waiting runs "
                    "adopted, %d given back to be claimed; %d steps' processes to kill, "
                    "%d slots given back", gone, "lost" if done.lost else "stopped",
                    len(done.interrupted), len(done.adopted), len(done.requeued),
                    done.orphans, done.freed)
        for run_id, resume in done.adopted.items():
            if run_id not in self._tasks:
                self._states[run_id] = RunState.restored(resume["state"])
                self._start(run_id, resume)
        if done.orphans:
            for listener in self.leases.orphan_listeners:
                listener()
        self.leases.wake()
        self.claim_wake()
        for run_id in done.interrupted + done.requeued:
            await self._publish(run_id)

    async def abandon(self, taken_by: str) -> None:
        """This node was found lost and its runs taken over by `taken_by`: stop them,
        killing their steps' processes; their writes are refused (nodes.Fenced)."""
        tasks = list(self._tasks.values())
        log.warning("stopping %d runs that node %s took over", len(tasks), taken_by)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)

    async def launch(self, request: LaunchRequest, actor: str, person: str = "", *,
                     cause: str = "", schedule: str = "", rerun: Rerun | None = None
                     ) -> dict[str, Any]:
        """Create a run and start it; `person` is who launched it (whom four eyes keep
        from approving it); `cause` why, when not by hand (a schedule, a rerun).
        A rerun runs the runbook as the first run had it, from its step on."""
        definition, environment, values, secrets, _pools = await asyncio.to_thread(
            partial(prepare, self.store, request,
                    definition=rerun.definition if rerun is not None else None))
        from_step = rerun.from_step if rerun is not None else 1

        # Claimed by this node, unless it is draining: then by another (claim_forever).
        node = self.node if self.takes_runs() else ""

        def create() -> int:
            with self.store.write() as session:
                run = Run(runbook=definition.name, environment=environment,
                          definition=definition.model_dump_json(),
                          variables=json.dumps(values), secrets=self.vault.seal(secrets),
                          guided=request.guided, step_through=request.step_through,
                          actor=actor, person=person, node=node, cause=cause,
                          schedule=schedule, from_step=from_step,
                          rerun_of=rerun.run_id if rerun is not None else None)
                session.add(run)
                session.flush()
                for position, step in enumerate(definition.steps, 1):
                    session.add(RunStep(run_id=run.id, position=position, name=step.name)
                                if position >= from_step else
                                RunStep(run_id=run.id, position=position, name=step.name,
                                        status=SKIPPED, reason=f"not run again: {cause}"))
                audit(session, actor, "run.launch", f"run {run.id}",
                      f"{definition.name} on {environment}" + (f": {cause}" if cause else ""))
                return run.id

        run_id = await asyncio.to_thread(create)
        if node or not self.node:
            self._states[run_id] = RunState()  # a cancel may come before the task starts
            self._start(run_id)
        else:
            self.fanout.tell("claim")
        if rerun is not None:
            await self._publish(rerun.run_id)  # it lists its reruns: shown with this one
        return await self._publish(run_id) or await asyncio.to_thread(self.get, run_id)

    async def cancel(self, run_id: int, actor: str) -> dict[str, Any]:
        current = await asyncio.to_thread(self.get, run_id)
        if current["status"] in FINISHED:
            raise Conflict(f"Run {run_id} already {current['status']}.")
        if run_id not in self._states and current["node"] != self.node:
            if not current["node"] and await asyncio.to_thread(
                    cancel_unclaimed, self.store, run_id, actor):
                self.fanout.tell("run", [run_id])
                return await self._publish(run_id) or current
            return await self._ask(run_id, "cancel", actor)
        await asyncio.to_thread(self._record, run_id, None, "cancel", actor, "")
        state = self._states.get(run_id)
        if state is not None:
            # The first cancel stops the current step and leaves the cleanup steps to run;
            # a second one stops those too.
            state.cancels += 1
            state.cancelled_by = state.cancelled_by or actor
            if state.cancels > 1:
                state.halted = True
            gate = self._waits.get(run_id)
            if gate is not None and gate.position == 0 and gate.future is not None \
                    and not gate.future.done():
                gate.future.set_result(("cancel", actor, ""))  # not started: nothing to clean
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

    async def decide(self, run_id: int, request: DecisionRequest, actor: str,
                     person: str = "") -> dict[str, Any]:
        """Answer what the run waits for, as `actor` (the person `person`)."""
        waiting = self._waits.get(run_id)
        if waiting is None and run_id not in self._states:
            current = await asyncio.to_thread(self.get, run_id)
            if current["waiting"] and current["node"] not in ("", self.node):
                return await self._ask(run_id, request.action, actor, person, request.note)
        if waiting is None:
            raise Conflict(f"Run {run_id} is not waiting for a decision.")
        if request.action not in waiting.actions:
            raise InvalidInput(f"Run {run_id} is waiting for "
                               f"{' or '.join(sorted(waiting.actions))}, not {request.action!r}.")
        if request.action == "approve" and waiting.excluded and person == waiting.excluded:
            raise Forbidden(f"{person} launched run {run_id}: another person must approve "
                            f"{'its start' if waiting.position == 0 else 'this step'}.")
        note = free_text(request.note, 1000, one_line=True)
        await asyncio.to_thread(self._record, run_id, waiting.position, request.action, actor,
                                note)
        if waiting.future is not None and not waiting.future.done():
            waiting.future.set_result((request.action, actor, note))
        return await self._moved_on(run_id, waiting)

    async def _ask(self, run_id: int, action: str, actor: str, person: str = "",
                   note: str = "") -> dict[str, Any]:
        """A cancel or decision for a run another node executes: that node acts on it
        (backend/runs/requests.py); the answer is what came of it."""
        asked = await asyncio.to_thread(requests.ask, self.store, run_id, action, actor,
                                        person, note)
        self.fanout.tell("request")
        deadline = asyncio.get_running_loop().time() + REQUEST_WAIT_S
        while (done := await asyncio.to_thread(requests.outcome, self.store, asked)) is False:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                node = (await asyncio.to_thread(self.get, run_id))["node"]
                raise Unavailable(
                    f"Node {node or 'none'}, which executes run {run_id}, has not acted on "
                    f"the {action} yet: it stands, and is acted on when that node can (or "
                    "when another takes the run over).")
            await woken(self._moved.setdefault(run_id, asyncio.Event()),
                        min(remaining, REQUEST_LOOK_S))
        if isinstance(done, WorkdeckError):
            raise done
        return await self._publish(run_id, tell=False) or \
            await asyncio.to_thread(self.get, run_id)

    async def _act_on_requests(self) -> None:
        """Act on the cancels and decisions other nodes stored for this node's runs, each
        in a task of its own (a cancel waits for the run to stop)."""
        for asked in await asyncio.to_thread(requests.pending, self.store, self.node):
            if asked.id not in self._acting:
                self._acting.add(asked.id or 0)
                task = asyncio.create_task(self._act_on(asked))
                task.add_done_callback(lambda _t, i=asked.id: self._acting.discard(i or 0))

    async def _act_on(self, asked: RunRequest) -> None:
        error: WorkdeckError | None = None
        try:
            if asked.action == "cancel":
                await self.cancel(asked.run_id, asked.actor)
            else:
                await self.decide(asked.run_id, DecisionRequest(
                    action=asked.action, note=asked.note), asked.actor, asked.person)
        except WorkdeckError as exc:
            error = exc
        try:
            await retrying(self.store, requests.answer, self.store, asked.id or 0, error,
                           what=f"answering request {asked.id}")
        except Exception:
            pass_failed(log, "answering request %s failed", asked.id)
        self.fanout.tell("run", [asked.run_id])

    async def _moved_on(self, run_id: int, left: Waiting, timeout: float = 10.0
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
            await woken(moved, remaining)

    # -------------------------------------------------------- execution

    async def _wait_for(self, run_id: int, position: int, actions: set[str], prompt: str,
                        runlog: RunLog, state: RunState, kind: str, excluded: str = "",
                        **where: Any) -> tuple[str, str, str]:
        """Wait for an operator's decision; the log says what was asked and what was
        decided, by whom.

        What it waits for and where the run's course stands are stored with the run
        (`kind` and `where` say how to come back to this question), so that a server
        stopped meanwhile asks it again once started."""
        future: asyncio.Future[tuple[str, str, str]] = asyncio.get_running_loop().create_future()
        self._waits[run_id] = Waiting(position, actions, prompt, future, excluded)
        # The question too, for whoever reads the run on another node (course.stored_waiting).
        resume = {"kind": kind, "position": position, "state": state.saved(), **where,
                  "actions": sorted(actions), "prompt": prompt, "excluded": excluded}
        await self._set_run(run_id, status=WAITING, reason=prompt, waiting=json.dumps(resume))
        runlog.note(position, "", f"waiting for an operator: {prompt}")
        for listener in self.wait_listeners:
            listener(run_id)
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

    def _load(self, run_id: int) -> tuple[Run, bool, dict[str, str], int]:
        """The run, whether its environment wants four eyes, its secrets, its last line."""
        with self.store.read() as session:
            run = session.get(Run, run_id)
            four_eyes = bool(session.exec(select(Environment.four_eyes).where(
                Environment.name == run.environment)).first())
        return run, four_eyes, self.vault.open(run.secrets), last_seq(self.store, run_id)

    async def _execute(self, run_id: int, resume: dict[str, Any] | None = None) -> None:
        """Run a run's steps from the first; or, with `resume` (what a run waited for when
        the server stopped), from that question on."""
        run, four_eyes, secrets, seen = await retrying(self.store, self._load, run_id,
                                                       what=f"run {run_id}")
        runlog = RunLog(self.store, self.hub, run_id, secrets=list(secrets.values()),
                        next_seq=seen + 1)
        runlog.start()
        state = self._states.setdefault(run_id, RunState())
        state.sensitive = frozenset(secrets)
        state.four_eyes = four_eyes
        try:
            outcome = await self._course(run_id, run, secrets, runlog, state, resume)
            self._states.pop(run_id, None)
            if outcome is not None:
                await asyncio.shield(self._finish(run_id, runlog, *outcome))
        except Fenced:
            # This node was found lost: the node that took the run over said how it
            # ended, and kills what was left of its steps. Nothing more of it is kept.
            log.warning("run %s was taken over by another node: this node stops it and "
                        "writes nothing more of it", run_id)
            self._states.pop(run_id, None)
            runlog.discard()
            self.hub.written(run_id)
            self.hub.forget(run_id)

    async def _course(self, run_id: int, run: Run, secrets: dict[str, str], runlog: RunLog,
                      state: RunState, resume: dict[str, Any] | None
                      ) -> tuple[str, str] | None:
        """The run's steps, in order; how the run ends and why (None: it waits on, for
        the next server, for a decision)."""
        definition = RunbookDef.model_validate_json(run.definition)
        variables = json.loads(run.variables) | secrets
        final, reason = SUCCEEDED, ""
        try:
            first = run.from_step  # a rerun's steps before it were run by the first run
            if resume is not None:
                first = max(resume["position"], 1)
                runlog.note(resume["position"], "", "the server started again: the run "
                                                    "waits on")
            if resume is None or resume["kind"] == "launch":
                if state.four_eyes:
                    refused = await self._approved_start(run_id, run, runlog, state)
                    if refused is not None:
                        raise _Refused(refused)
                await self._set_run(run_id, status=RUNNING, started_at=utcnow())
            for position, step in enumerate(definition.steps, 1):
                if position >= first:
                    await self._one_step(run_id, run, definition, position, step, variables,
                                         runlog, state,
                                         resume if position == first else None)
            final, reason = state.outcome()
        except _Refused as refusal:
            final, reason = CANCELLED, str(refusal)
        except asyncio.CancelledError:
            # Only a stopping server cancels the run itself (a cancel stops its activity).
            if state.parked:
                # It waited for a decision: it waits on, stored, for the next server.
                runlog.note(state.position, "", "the server stopped; the run still waits "
                                                "and will ask again once it is started")
                await asyncio.shield(runlog.close(deadline_s=SHUTDOWN_WAIT_S))
                self.hub.written(run_id)
                self._states.pop(run_id, None)
                return None
            final, reason = INTERRUPTED, "the server was stopped during this run"
            await asyncio.shield(self._end_position(
                run_id, state.position, INTERRUPTED, "the server was stopped", runlog))
        except Fenced:
            raise
        except Exception as exc:  # a bug must end the run visibly, not leave it running
            log.exception("run %s failed", run_id)
            final, reason = FAILED, free_text(f"internal error: {exc}", 500, one_line=True)
        return final, reason

    async def _approved_start(self, run_id: int, run: Run, runlog: RunLog,
                              state: RunState) -> str | None:
        """Four eyes on the run's environment: wait until another person allows the
        start. None once approved; why not, once refused."""
        action, actor, note = await self._wait_for(
            run_id, 0, MANUAL_ACTIONS, f"needs approval by another person to start on "
            f"{run.environment} (four eyes)", runlog, state, "launch", excluded=run.person)
        if action == "approve":
            return None
        if action == "cancel":
            return f"cancelled by {actor}"
        return f"refused by {actor}" + (f": {note}" if note else "")

    async def _one_step(self, run_id: int, run: Run, definition: RunbookDef, position: int,
                        step: Step, variables: dict[str, str], runlog: RunLog,
                        state: RunState, resume: dict[str, Any] | None = None) -> None:
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
                             runlog: RunLog, state: RunState,
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

    async def _finish(self, run_id: int, runlog: RunLog, status: str, reason: str) -> None:
        # The outcome first, after the steps it did not reach and its slots (a finished run
        # holds none): stored before the rest of what it has to write (on a full disk,
        # before its held lines). Its log's followers end once its last line is stored
        # (LogHub.writing).
        await self._change_steps(run_id, StepChange(
            None, None, frozenset([QUEUED, WAITING]),
            set_fields(status=SKIPPED, reason=f"not run: the run {status}")),
            "the steps not reached")
        await self.leases.release_run(run_id)
        # The run ends here: nothing can retry it, so its sealed values go with it.
        await self._set_run(run_id, status=status, reason=reason, finished_at=utcnow(),
                            waiting="", secrets="")
        try:
            await runlog.close(deadline_s=SHUTDOWN_WAIT_S if self._stopping else None)
        finally:
            self.hub.written(run_id)
        await self._set_run(run_id, output_bytes=runlog.output_bytes, log_closed=True)
        self.hub.forget(run_id)
        self.hub.notify(run_id)
        for listener in self.finish_listeners:
            listener(run_id)

    async def _run_step(self, run_id: int, run: Run, definition: RunbookDef, position: int,
                        step: Step, variables: dict[str, str], runlog: RunLog,
                        state: RunState, failed_before: dict[str, Any] | None = None) -> str:
        """Run one step to its end; return SUCCEEDED, FAILED, SKIPPED or "abort".

        `failed_before`: the step had failed and waited for a guided decision when the
        server stopped; it asks again, with its attempts and failed workers as they were."""
        if step.manual is not None:
            await self._set_step(run_id, position, status=WAITING, started_at=utcnow(),
                                 reason=step.manual)
            another = step.approval == "another person" or state.four_eyes
            action, actor, note = await self._wait_for(
                run_id, position, MANUAL_ACTIONS, f"manual step {position}: {step.manual}"
                + (" (needs approval by another person)" if another else ""),
                runlog, state, "manual", excluded=run.person if another else "")
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


class _Refused(Exception):
    """A run whose start was refused (four eyes): it ends cancelled, with who and why."""
