"""One attempt at a step: a worker leased from its pool (or every member of it), the step
run there through its transport, its processes killed and seen gone at any other end,
and its slot given back, or kept as an orphan when that cannot be confirmed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlmodel import select

from backend.runs.course import RunState
from backend.runs.leases import Granted, Leases, NoWorker
from backend.runs.logstore import LogStoreFull, RunLog
from backend.runs.records import RunRecords
from backend.store.db import FULL, Store, retrying
from backend.store.models import (
    FAILED,
    LOST,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Pool,
    RunStep,
    utcnow,
)
from backend.transport.reach import Reach
from backend.transport.remote import (
    StepProcess,
    StepResult,
    container_name,
    new_marker,
    run_step,
    script_text,
)
from backend.transport.ssh import SSHFailure
from wire.runbook import Step

log = logging.getLogger(__name__)


class StepAttempts(RunRecords):
    reach: Reach
    _states: dict[int, RunState]  # runs under way (the engine's)
    checker: Any  # the HealthChecker: a worker a step could not reach is checked again
    leases: Leases

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
            workers, unable = await retrying(self.store, self.leases.every_member, pool,
                                             what=f"the members of {pool}")
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

        await retrying(self.store, write, what=f"step {position} of run {run_id}")
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
            granted = await self.leases.acquire(pool, run_id, position, step_name=step.name,
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
        marker = new_marker()
        # Its container's name too, before anything starts: a server that dies from here
        # on can remove it.
        process = StepProcess(marker, container=container_name(marker) if step.container
                              else "")
        ended_clean = False
        try:
            # Known before anything starts: a server that dies from here on can find the
            # step's processes by their marker.
            await self.leases.record_process(granted.lease_id, process)
            await self.publish_worker(worker)  # its slots in use changed
            if row is None:
                await self._set_step(run_id, position, None, worker=worker)
            await self._set_step(run_id, position, worker, status=RUNNING, reason="",
                                 worker_reason=granted.worker_reason, attempt=attempt,
                                 started_at=utcnow(), finished_at=None, exit_status=None)
            runlog.note(position, worker, f"step {position} ({step.name}) attempt {attempt} "
                                          f"on {granted.worker_reason}")
            [target] = await retrying(self.store, self.reach.targets, [worker],
                                      what=f"how to reach {worker}")
            try:
                transport = await self.reach.transport(target)
            except SSHFailure as exc:
                reason = f"cannot reach {worker}: {exc}"
                runlog.note(position, worker, reason)
                await self._set_step(run_id, position, worker, status=FAILED, reason=reason,
                                     finished_at=utcnow())
                ended_clean = True  # nothing was started
                await self._recheck(worker, runlog, position)
                return FAILED, worker
            engine, chosen = (await self._engines(worker, pool) if step.container
                              else (None, None))
            env = {**variables, "WORKDECK_RUN_ID": str(run_id),
                   "WORKDECK_STEP": step.name, "WORKDECK_WORKER": worker}
            recorded: list[asyncio.Task[None]] = []
            try:
                result = await run_step(
                    transport, script_text(step.script, env, target.work_dir,
                                           self._sensitive(run_id), marker),
                    image=step.container, timeout=step.timeout, process=process,
                    work_dir=target.work_dir, engine=engine, chosen=chosen,
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
            # A step that went well needs no reason; one that did not says what went wrong
            # (why its worker was chosen stays beside it).
            await self._set_step(run_id, position, worker, status=status, finished_at=utcnow(),
                                 reason="" if status == SUCCEEDED else reason,
                                 exit_status=result.exit_status)
            if status == LOST:  # the connection went: is the worker still there?
                await self._recheck(worker, runlog, position)
            return status, worker
        finally:
            # Cancelled or failed here: run_step killed the group (process.gone says).
            ended_clean = ended_clean or process.gone is True
            await asyncio.shield(self._give_back(run_id, granted, ended_clean, worker))

    def _sensitive(self, run_id: int) -> frozenset[str]:
        state = self._states.get(run_id)
        return state.sensitive if state is not None else frozenset()

    async def _engines(self, worker: str, pool: str) -> tuple[str | None, str | None]:
        """For a step in an image: the engine the worker's check found answering there
        ("podman" of "podman 4.3.1"), and the one the worker, else the step's pool, is set
        to use (which is then the only one tried)."""
        shown = self.bus.latest.get("worker", {}).get(worker) or {}
        found = ((shown.get("facts") or {}).get("container_engine") or "").split(" ", 1)[0]
        chosen = shown.get("engine") or await retrying(
            self.store, _pool_engine, self.store, pool, what=f"the engine of {pool}")
        return found or None, chosen or None

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
        if result.timed_out or any(full in result.reason for full in FULL):
            return FAILED, reason
        return LOST, reason

    async def _give_back(self, run_id: int, granted: Granted, clean: bool, worker: str
                         ) -> None:
        """The step is over: its slot goes back, or stays as an orphan when its processes
        may still run (a lost connection, a kill that could not be confirmed)."""
        if clean:
            await self.leases.release(granted.lease_id, run_id)
        else:
            await self.leases.orphan(granted.lease_id, "the step ended without its processes "
                                                       "being seen gone")
        await self.publish_worker(worker)


def _pool_engine(store: Store, pool: str) -> str | None:
    with store.read() as session:
        return session.exec(select(Pool.engine).where(Pool.name == pool)).first() or None
