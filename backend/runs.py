"""The run engine: a run's steps in order, each on a worker leased from its pool.

Every state change is stored, then pushed to clients. Where the run waits for an
operator (step-through, guided failure, a manual step), the decision is stored with
who and when. Cancelling kills the step's processes on the worker and checks they are
gone; a server that stops mid-run leaves runs marked interrupted at its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import select

from backend import fleet, runbooks
from backend.db import Store
from backend.errors import Conflict, InvalidInput, NotFound
from backend.events import EventBus
from backend.fleet import audit, iso
from backend.leases import Leases, NoWorker
from backend.logstore import LogHub, RunLog, last_seq
from backend.models import (
    CANCELLED,
    DEFAULT_POOL,
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
    Environment,
    Pool,
    Run,
    RunStep,
    utcnow,
)
from backend.remote import LocalTransport, SSHTransport, Transport, run_step, script_text
from backend.runbooks import RunbookDef, Step
from backend.ssh import ConnectionPool, SSHFailure
from backend.vault import Vault

log = logging.getLogger(__name__)

STEP_ACTIONS = {"continue", "skip", "abort"}
FAILURE_ACTIONS = {"retry", "skip", "abort"}
MANUAL_ACTIONS = {"approve", "abort"}


class LaunchRequest(BaseModel):
    runbook: str
    environment: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    guided: bool = False
    step_through: bool = False


class DecisionRequest(BaseModel):
    action: str
    note: str = ""


@dataclass
class _Waiting:
    position: int
    actions: set[str]
    prompt: str
    future: asyncio.Future[tuple[str, str, str]]


# ---------------------------------------------------------------- launching


def environments(store: Store) -> list[str]:
    with store.read() as session:
        return list(session.exec(select(Environment.name).order_by(Environment.name)).all())


def add_environment(store: Store, name: str, actor: str) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise InvalidInput(f"Environment name {name!r} is not valid.")
    with store.write() as session:
        if session.exec(select(Environment).where(Environment.name == name)).first():
            raise Conflict(f"An environment named {name!r} already exists.")
        session.add(Environment(name=name))
        audit(session, actor, "environment.add", name)
    return {"name": name}


def resolve_pool(definition: RunbookDef, step: Step, environment: str) -> str:
    """The pool a step runs in: a pool variable for this environment, a pool name, or the
    default pool."""
    if step.pool is None:
        return DEFAULT_POOL
    if step.pool in definition.pools:
        scoped = definition.pools[step.pool]
        if environment not in scoped:
            raise InvalidInput(
                f"Step {step.name!r} uses the pool variable {step.pool!r}, which has no value "
                f"for {environment} (it has: {', '.join(scoped) or 'none'}).")
        return scoped[environment]
    return step.pool


def prepare(store: Store, request: LaunchRequest) -> tuple[RunbookDef, str, dict[str, str],
                                                           dict[str, str], list[str]]:
    """Validate a launch whole: (definition, environment, values, secrets, pools)."""
    definition = runbooks.get(store, request.runbook)
    known_envs = environments(store)
    environment = request.environment
    if environment is None:
        if len(known_envs) != 1:
            raise InvalidInput("Say which environment to run in (--env): "
                               f"{', '.join(known_envs) or 'none is defined yet'}.")
        environment = known_envs[0]
    if environment not in known_envs:
        raise NotFound(f"No environment is named {environment!r} (known: "
                       f"{', '.join(known_envs) or 'none'}).")
    declared = {v.name: v for v in definition.variables}
    unknown = sorted(set(request.variables) - set(declared))
    if unknown:
        raise InvalidInput(f"Runbook {definition.name!r} has no variable {unknown[0]!r} "
                           f"(it has: {', '.join(declared) or 'none'}).")
    values: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for var in definition.variables:
        value = request.variables.get(var.name, var.default)
        if value is None:
            raise InvalidInput(f"Variable {var.name!r} needs a value (--var {var.name}=...).")
        (secrets if var.sensitive else values)[var.name] = value
    pools = []
    with store.read() as session:
        known_pools = set(session.exec(select(Pool.name)).all())
    for step in definition.steps:
        if step.manual is not None:
            pools.append("")
            continue
        pool = resolve_pool(definition, step, environment)
        if pool not in known_pools:
            raise InvalidInput(f"Step {step.name!r} runs in pool {pool!r}, which does not "
                               "exist.")
        if not fleet.get_pool(store, pool)["members"]:
            raise InvalidInput(f"Step {step.name!r} runs in pool {pool!r}, which has no "
                               "workers.")
        pools.append(pool)
    return definition, environment, values, secrets, pools


def plan(store: Store, leases: Leases, request: LaunchRequest) -> dict[str, Any]:
    """What a launch would do now: each step's pool, the worker it would take, pool health."""
    definition, environment, values, secrets, pools = prepare(store, request)
    steps = []
    for step, pool in zip(definition.steps, pools, strict=True):
        entry: dict[str, Any] = {"name": step.name, "manual": step.manual is not None,
                                 "pool": pool, "run_on": step.run_on,
                                 "condition": step.condition}
        if pool:
            info = fleet.get_pool(store, pool, leases.queued_by_pool())
            if step.run_on == "all":
                would_take = leases.healthy_members(pool)
            else:
                would_take = [name for name in [leases.next_worker(pool)] if name]
            entry.update(healthy=info["healthy_workers"], workers=info["workers"],
                         leased=info["leased"], capacity=info["capacity"],
                         queued=info["queued"], would_take=would_take)
        steps.append(entry)
    return {"runbook": definition.name, "environment": environment, "variables": values,
            "sensitive": sorted(secrets), "steps": steps}


# ---------------------------------------------------------------- public shapes


def run_public(run: Run, steps: list[RunStep], waiting: _Waiting | None = None
               ) -> dict[str, Any]:
    definition = json.loads(run.definition)
    return {
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
                 hub: LogHub, checker: Any) -> None:
        self.store = store
        self.connections = connections
        self.bus = bus
        self.vault = vault
        self.hub = hub
        self.checker = checker
        self.leases = Leases(store)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._waits: dict[int, _Waiting] = {}

    # -------------------------------------------------------- queries

    def get(self, run_id: int) -> dict[str, Any]:
        with self.store.read() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NotFound(f"No run has the id {run_id}.")
            steps = session.exec(select(RunStep).where(RunStep.run_id == run_id)).all()
        return run_public(run, list(steps), self._waits.get(run_id))

    def list(self, limit: int = 200, status: str | None = None) -> list[dict[str, Any]]:
        with self.store.read() as session:
            query = select(Run).order_by(Run.id.desc()).limit(limit)
            if status:
                query = query.where(Run.status == status)
            runs = session.exec(query).all()
            ids = [r.id for r in runs]
            steps = session.exec(select(RunStep).where(RunStep.run_id.in_(ids))).all()
        by_run: dict[int, list[RunStep]] = {}
        for step in steps:
            by_run.setdefault(step.run_id, []).append(step)
        return [run_public(r, by_run.get(r.id, []), self._waits.get(r.id)) for r in runs]

    async def _publish_worker(self, name: str) -> None:
        for worker in await asyncio.to_thread(fleet.list_workers, self.store, [name]):
            self.bus.publish("worker", name, worker)

    def _publish(self, run_id: int) -> None:
        with contextlib.suppress(NotFound):
            self.bus.publish("run", str(run_id), self.get(run_id))

    # -------------------------------------------------------- lifecycle

    def recover(self) -> int:
        """At start: runs the last server left unfinished are interrupted, not running."""
        self.leases.release_all()
        with self.store.write() as session:
            runs = session.exec(select(Run).where(Run.status.in_(
                [QUEUED, RUNNING, WAITING]))).all()
            for run in runs:
                run.reason = f"the server stopped while this run was {run.status}"
                run.status = INTERRUPTED
                run.finished_at = utcnow()
                session.add(run)
                for step in session.exec(select(RunStep).where(
                        RunStep.run_id == run.id, RunStep.status.in_([RUNNING, QUEUED]))):
                    if step.status == RUNNING:
                        step.status = INTERRUPTED
                        step.reason = "the server stopped during this step"
                        step.finished_at = utcnow()
                        session.add(step)
        return len(runs)

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
        task = asyncio.create_task(self._execute(run_id))
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))
        self._publish(run_id)
        return self.get(run_id)

    async def cancel(self, run_id: int, actor: str) -> dict[str, Any]:
        current = self.get(run_id)
        if current["status"] in FINISHED:
            raise Conflict(f"Run {run_id} already {current['status']}.")
        await asyncio.to_thread(self._record, run_id, None, "cancel", actor, "")
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=30)
        return self.get(run_id)

    def decide(self, run_id: int, request: DecisionRequest, actor: str) -> dict[str, Any]:
        waiting = self._waits.get(run_id)
        if waiting is None:
            raise Conflict(f"Run {run_id} is not waiting for a decision.")
        if request.action not in waiting.actions:
            raise InvalidInput(f"Run {run_id} is waiting for "
                               f"{' or '.join(sorted(waiting.actions))}, not {request.action!r}.")
        self._record(run_id, waiting.position, request.action, actor, request.note)
        if not waiting.future.done():
            waiting.future.set_result((request.action, actor, request.note))
        return self.get(run_id)

    def _record(self, run_id: int, position: int | None, action: str, actor: str,
                note: str) -> None:
        with self.store.write() as session:
            session.add(Decision(run_id=run_id, position=position, action=action, actor=actor,
                                 note=note))
            audit(session, actor, f"run.{action}", f"run {run_id}",
                  (f"step {position}" if position else "") + (f": {note}" if note else ""))

    # -------------------------------------------------------- execution

    def _update_run(self, run_id: int, **changes: Any) -> None:
        with self.store.write() as session:
            run = session.get(Run, run_id)
            for key, value in changes.items():
                setattr(run, key, value)
            session.add(run)
        self._publish(run_id)

    def _update_step(self, run_id: int, position: int, on_worker: str | None = None,
                     **changes: Any) -> None:
        """Change the step's rows (only the row of `on_worker`, when given)."""
        with self.store.write() as session:
            query = select(RunStep).where(RunStep.run_id == run_id,
                                          RunStep.position == position)
            if on_worker is not None:
                query = query.where(RunStep.worker == on_worker)
            for step in session.exec(query).all():
                for key, value in changes.items():
                    setattr(step, key, value)
                session.add(step)
        self._publish(run_id)

    async def _wait_for(self, run_id: int, position: int, actions: set[str], prompt: str
                        ) -> tuple[str, str, str]:
        future: asyncio.Future[tuple[str, str, str]] = asyncio.get_running_loop().create_future()
        self._waits[run_id] = _Waiting(position, actions, prompt, future)
        await asyncio.to_thread(self._update_run, run_id, status=WAITING, reason=prompt)
        try:
            return await future
        finally:
            self._waits.pop(run_id, None)
            await asyncio.to_thread(self._update_run, run_id, status=RUNNING, reason="")

    async def _execute(self, run_id: int) -> None:
        with self.store.read() as session:
            run = session.get(Run, run_id)
        definition = RunbookDef.model_validate_json(run.definition)
        values = json.loads(run.variables)
        secrets = self.vault.open(run.secrets)
        runlog = RunLog(self.store, self.hub, run_id, secrets=list(secrets.values()),
                        next_seq=last_seq(self.store, run_id) + 1)
        runlog.start()
        await asyncio.to_thread(self._update_run, run_id, status=RUNNING, started_at=utcnow())
        failed = False
        final, reason = SUCCEEDED, ""
        try:
            for position, step in enumerate(definition.steps, 1):
                wanted = {"success": not failed, "failure": failed, "always": True}
                if not wanted[step.condition]:
                    await asyncio.to_thread(self._update_step, run_id, position, status=SKIPPED,
                                            reason=f"condition {step.condition!r} not met")
                    continue
                if run.step_through:
                    action, actor, _note = await self._wait_for(
                        run_id, position, STEP_ACTIONS,
                        f"step {position} ({step.name}) is next: continue, skip or abort")
                    if action == "skip":
                        await asyncio.to_thread(self._update_step, run_id, position,
                                                status=SKIPPED, reason=f"skipped by {actor}")
                        continue
                    if action == "abort":
                        final, reason = FAILED, f"aborted by {actor} before step {position}"
                        break
                outcome = await self._run_step(run_id, run, definition, position, step,
                                               values | secrets, runlog)
                if outcome == "abort":
                    final, reason = FAILED, f"aborted at step {position} ({step.name})"
                    break
                failed = failed or outcome == FAILED
            if final == SUCCEEDED and failed:
                final, reason = FAILED, "a step failed"
        except asyncio.CancelledError:
            final, reason = CANCELLED, "cancelled"
            await asyncio.shield(self._cancel_steps(run_id, runlog))
        except Exception as exc:  # a bug must end the run visibly, not leave it running
            log.exception("run %s failed", run_id)
            final, reason = FAILED, f"internal error: {exc}"
        finally:
            await asyncio.shield(self._finish(run_id, runlog, final, reason))

    async def _cancel_steps(self, run_id: int, runlog: RunLog) -> None:
        def mark() -> None:
            with self.store.write() as session:
                for step in session.exec(select(RunStep).where(
                        RunStep.run_id == run_id, RunStep.status.in_([RUNNING, QUEUED]))):
                    step.status = CANCELLED
                    step.reason = "the run was cancelled"
                    step.finished_at = utcnow()
                    session.add(step)

        await asyncio.to_thread(mark)
        runlog.note(0, "", "run cancelled")

    async def _finish(self, run_id: int, runlog: RunLog, status: str, reason: str) -> None:
        def not_reached() -> None:
            with self.store.write() as session:
                for step in session.exec(select(RunStep).where(
                        RunStep.run_id == run_id, RunStep.status == QUEUED)):
                    step.status = SKIPPED
                    step.reason = f"not run: the run {status}"
                    session.add(step)

        await asyncio.to_thread(not_reached)
        await self.leases.release_run(run_id)
        await runlog.close()
        await asyncio.to_thread(self._update_run, run_id, status=status, reason=reason,
                                finished_at=utcnow(), output_bytes=runlog.output_bytes)
        self.hub.forget(run_id)
        self.hub.notify(run_id)

    async def _run_step(self, run_id: int, run: Run, definition: RunbookDef, position: int,
                        step: Step, variables: dict[str, str], runlog: RunLog) -> str:
        """Run one step to its end; return SUCCEEDED, FAILED, SKIPPED or "abort"."""
        if step.manual is not None:
            await asyncio.to_thread(self._update_step, run_id, position, status=WAITING,
                                    started_at=utcnow(), reason=step.manual)
            runlog.note(position, "", f"manual intervention: {step.manual}")
            action, actor, note = await self._wait_for(
                run_id, position, MANUAL_ACTIONS, f"manual step {position}: {step.manual}")
            status = SUCCEEDED if action == "approve" else FAILED
            said = f"{action}d by {actor}" if action == "approve" else f"aborted by {actor}"
            runlog.note(position, "", said + (f": {note}" if note else ""))
            await asyncio.to_thread(self._update_step, run_id, position, status=status,
                                    finished_at=utcnow(), reason=said + (f": {note}" if note
                                                                        else ""))
            return SUCCEEDED if action == "approve" else "abort"

        pool = resolve_pool(definition, step, run.environment)
        attempt = 0
        while True:
            attempt += 1
            status = await self._attempt(run_id, position, step, pool, variables, runlog,
                                         attempt)
            if status == SUCCEEDED:
                return SUCCEEDED
            if attempt <= step.retries:
                runlog.note(position, "", f"attempt {attempt} {status}; retrying "
                                          f"({step.retries - attempt + 1} retries left)")
                continue
            if not run.guided:
                return FAILED
            action, actor, _note = await self._wait_for(
                run_id, position, FAILURE_ACTIONS,
                f"step {position} ({step.name}) failed: retry, skip or abort")
            if action == "retry":
                continue
            if action == "skip":
                await asyncio.to_thread(self._update_step, run_id, position, status=SKIPPED,
                                        reason=f"failed, then skipped by {actor}")
                return SKIPPED
            return "abort"

    async def _attempt(self, run_id: int, position: int, step: Step, pool: str,
                       variables: dict[str, str], runlog: RunLog, attempt: int) -> str:
        try:
            if step.run_on == "all":
                workers = await asyncio.to_thread(self.leases.healthy_members, pool)
                if not workers:
                    raise NoWorker(f"Pool {pool!r} has no healthy, enabled worker.")
                await asyncio.to_thread(self._fan_out_rows, run_id, position, step, workers)
            else:
                workers = [None]  # type: ignore[list-item]
            results = await asyncio.gather(*(
                self._on_worker(run_id, position, step, pool, only, variables, runlog, attempt)
                for only in workers))
        except NoWorker as exc:
            runlog.note(position, "", str(exc))
            await asyncio.to_thread(self._update_step, run_id, position, status=FAILED,
                                    reason=str(exc), finished_at=utcnow(), attempt=attempt)
            return FAILED
        return SUCCEEDED if all(r == SUCCEEDED for r in results) else FAILED

    def _fan_out_rows(self, run_id: int, position: int, step: Step, workers: list[str]) -> None:
        with self.store.write() as session:
            rows = session.exec(select(RunStep).where(RunStep.run_id == run_id,
                                                      RunStep.position == position)).all()
            have = {r.worker for r in rows}
            for row in rows:
                if row.worker == "":
                    session.delete(row)
            for worker in workers:
                if worker not in have:
                    session.add(RunStep(run_id=run_id, position=position, name=step.name,
                                        worker=worker))

    async def _on_worker(self, run_id: int, position: int, step: Step, pool: str,
                         only: str | None, variables: dict[str, str], runlog: RunLog,
                         attempt: int) -> str:
        row = only if only is not None else None

        def waiting() -> None:
            runlog.note(position, only or "", f"waiting for a free slot in {pool}")
            self._update_step(run_id, position, row, status=QUEUED,
                              reason=f"waiting for a free slot in {pool}")

        granted = await self.leases.acquire(pool, run_id, position, step=step.name, only=only,
                                            on_wait=waiting)
        worker = granted.worker
        await self._publish_worker(worker)  # its slots in use changed
        try:
            if row is None:
                await asyncio.to_thread(self._update_step, run_id, position, None,
                                        worker=worker)
            await asyncio.to_thread(self._update_step, run_id, position, worker,
                                    status=RUNNING, reason=granted.reason, attempt=attempt,
                                    started_at=utcnow(), finished_at=None, exit_status=None)
            runlog.note(position, worker, f"step {position} ({step.name}) attempt {attempt} "
                                          f"on {granted.reason}")
            try:
                transport = await self._transport(worker)
            except SSHFailure as exc:
                reason = f"cannot reach {worker}: {exc}"
                runlog.note(position, worker, reason)
                await asyncio.to_thread(self._update_step, run_id, position, worker,
                                        status=FAILED, reason=reason, finished_at=utcnow())
                return FAILED
            target = self.checker.targets([worker])[0]
            env = {**variables, "WORKDECK_RUN_ID": str(run_id),
                   "WORKDECK_STEP": step.name, "WORKDECK_WORKER": worker}
            result = await run_step(
                transport, script_text(step.script, env, target.work_dir),
                image=step.container, timeout=step.timeout,
                output=lambda stream, data: runlog.output(position, worker, stream, data))
            runlog.end_stream(position, worker)
            if result.exit_status == 0:
                status, reason = SUCCEEDED, "exit status 0"
            elif result.timed_out:
                status, reason = FAILED, result.reason
            elif result.exit_status is None:
                status, reason = LOST, result.reason
            else:
                status, reason = FAILED, f"exit status {result.exit_status}"
            runlog.note(position, worker, f"step {position} {status}: {reason}")
            # A step that went well keeps why its worker was chosen; one that did not says
            # what went wrong.
            await asyncio.to_thread(self._update_step, run_id, position, worker,
                                    status=status, finished_at=utcnow(),
                                    reason=granted.reason if status == SUCCEEDED else reason,
                                    exit_status=result.exit_status)
            return status
        finally:
            await self.leases.release(granted.lease_id)
            await self._publish_worker(worker)

    async def _transport(self, worker: str) -> Transport:
        target = self.checker.targets([worker])[0]
        if target.builtin:
            return LocalTransport()
        conn = await self.connections.connection(target.name, target.endpoint, timeout=30)
        return SSHTransport(conn)
