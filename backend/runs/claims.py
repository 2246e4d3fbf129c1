"""Which node executes a run, and what happens to a node's runs when it is gone.

A run is executed by the node named in `run.node`. The node a run is launched on claims
it at once, unless it is draining; a run nobody claimed ("") is claimed by the next live
node that takes runs, with row locks (FOR UPDATE SKIP LOCKED), so that two nodes never
both take it.

When a node is gone (lost: its heartbeat stopped; or stopped, with runs that wait for a
decision), the leader takes over in one transaction what it left:
- a run that waits for a decision is adopted: it waits on, on the leader;
- a run that was claimed but had not started is given back to be claimed again;
- every other unfinished run is interrupted, with a reason naming the node; its steps'
  leases become orphans (the reaper kills what is left of them on the workers, and only
  then gives their slots back), or are given back at once where no process was
  recorded.
A lost node is marked so in the same transaction: it writes nothing more (nodes.Fenced).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, select

from backend.fleet import audit
from backend.nodes import elapsed
from backend.runs import requests
from backend.store.db import Store
from backend.store.models import (
    CANCELLED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SKIPPED,
    WAITING,
    Decision,
    Lease,
    LogChunk,
    Node,
    Run,
    RunStep,
    StepWait,
)
from backend.store.sql import database_now

CLAIM_BATCH = 16  # runs claimed in one transaction at most


def claim_queued(store: Store, node: str, limit: int = CLAIM_BATCH) -> list[int]:
    """Claim for `node` the oldest runs nobody claimed; their ids."""
    with store.write() as session:
        ids = list(session.exec(
            select(Run.id).where(Run.status == QUEUED, Run.node == "")
            .order_by(Run.id).limit(limit).with_for_update(skip_locked=True)).all())
        if ids:
            session.exec(update(Run).where(Run.id.in_(ids)).values(node=node))  # type: ignore[call-overload]
    return [run_id for run_id in ids if run_id is not None]


@dataclass
class Takeover:
    """What taking over a gone node did."""

    node: str
    lost: bool = False  # its heartbeat had stopped (not a stop it said)
    interrupted: list[int] = field(default_factory=list)
    adopted: dict[int, dict[str, object]] = field(default_factory=dict)  # run -> waiting
    requeued: list[int] = field(default_factory=list)
    orphans: int = 0  # leases whose processes are to be killed
    freed: int = 0  # leases given back at once: no process of theirs was known


def take_over(store: Store, gone: str, me: str) -> Takeover:
    """Take over, for node `me`, the unfinished runs of node `gone` (see the module)."""
    done = Takeover(gone)
    with store.write() as session:
        now = database_now(session)
        row = session.exec(select(Node).where(Node.name == gone).with_for_update()).first()
        if row is not None and row.stopped_at is None:
            age = elapsed(now, row.heartbeat_at)
            if age < row.lease_s:
                return done  # it is back: nothing to take
            done.lost = True
            row.lost_at, row.taken_over_by = now, me
            session.add(row)
            why = f"node {gone} stopped answering (its last heartbeat was {age:.0f} s ago)"
        else:
            why = f"node {gone} stopped"
        runs = session.exec(select(Run).where(Run.node == gone, Run.finished_at == None)  # noqa: E711
                            .with_for_update()).all()
        for run in runs:
            if run.status == WAITING and run.waiting:
                run.node = me
                done.adopted[run.id or 0] = json.loads(run.waiting)
            elif run.status == QUEUED and run.started_at is None:
                run.node = ""
                done.requeued.append(run.id or 0)
            else:
                _interrupt(session, run, now, f"{why}; node {me} interrupted it")
                run.node = me  # the leader sees to what is left of its steps
                done.interrupted.append(run.id or 0)
            session.add(run)
        # Its steps' places in the queue go with it (a run it had not started, once
        # claimed again, queues anew).
        session.exec(delete(StepWait).where(StepWait.node == gone))  # type: ignore[call-overload]
        if done.interrupted:
            done.orphans, done.freed = _orphan_leases(session, done.interrupted,
                                                      f"{why} during this step")
            requests.answer_all(session, done.interrupted, f"the run was interrupted: {why}")
    return done


def cancel_unclaimed(store: Store, run_id: int, actor: str) -> bool:
    """Cancel a run that no node claimed yet (False: one has claimed it meanwhile)."""
    with store.write() as session:
        run = session.exec(select(Run).where(Run.id == run_id, Run.node == "",
                                             Run.status == QUEUED).with_for_update()).first()
        if run is None:
            return False
        now = database_now(session)
        run.status, run.reason, run.finished_at = CANCELLED, f"cancelled by {actor}", now
        run.secrets, run.log_closed = "", True
        session.add(run)
        for step in session.exec(select(RunStep).where(RunStep.run_id == run_id)):
            step.status, step.reason = SKIPPED, f"not run: the run {CANCELLED}"
            session.add(step)
        session.add(Decision(run_id=run_id, action="cancel", actor=actor))
        audit(session, actor, "run.cancel", f"run {run_id}", "")
    return True


def _interrupt(session: Session, run: Run, now: datetime, reason: str) -> None:
    run.status, run.reason, run.finished_at = INTERRUPTED, reason, now
    run.log_closed = True  # what the lost node would still write is refused
    run.secrets = run.waiting = ""  # it can never be retried: its sealed values go
    for step in session.exec(select(RunStep).where(
            RunStep.run_id == run.id, RunStep.status.in_([RUNNING, QUEUED, WAITING]))):
        if step.status == RUNNING:
            step.status, step.reason = INTERRUPTED, reason
        else:
            step.status, step.reason = SKIPPED, f"not run: the run {INTERRUPTED}"
        step.finished_at = now
        session.add(step)
    # Said in the log too, where whoever reads why the run ended looks.
    last = session.exec(select(LogChunk.last_seq).where(LogChunk.run_id == run.id)
                        .order_by(LogChunk.last_seq.desc()).limit(1)).first() or 0  # type: ignore[attr-defined]
    session.add(LogChunk(run_id=run.id or 0, first_seq=last + 1, last_seq=last + 1,
                         position=0, worker="", stream="workdeck",
                         lines=f"{time.time():.3f}\tinterrupted: {reason}"))


def _orphan_leases(session: Session, runs: list[int], reason: str) -> tuple[int, int]:
    """The leases of `runs`: orphans where a process is known, given back where not."""
    unknown = (Lease.run_id.in_(runs)) & (Lease.marker == "") & (Lease.pgid == None)  # type: ignore[attr-defined]  # noqa: E711
    freed = len(session.exec(select(Lease.id).where(unknown)).all())
    session.exec(delete(Lease).where(unknown))  # type: ignore[call-overload]
    orphans = session.exec(select(Lease).where(Lease.run_id.in_(runs),  # type: ignore[attr-defined]
                                               Lease.orphan == "")).all()
    for lease in orphans:
        lease.orphan = reason
        session.add(lease)
    return len(orphans), freed
