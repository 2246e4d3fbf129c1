"""Which node executes a run: claimed once, never by two; what a gone node left is taken
over once; a node found lost writes nothing until it has stopped its stale work."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from conftest import both_stores
from sqlmodel import select

from backend import nodes
from backend.nodes import Fenced, Registry
from backend.runs.claims import claim_queued, take_over
from backend.runs.logstore import read
from backend.store.models import (
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SKIPPED,
    WAITING,
    Lease,
    Node,
    Run,
    RunStep,
    Worker,
    utcnow,
)
from wire.runbook import RunbookDef, Step

pytestmark = both_stores


DEFINITION = RunbookDef(name="r", steps=[
    Step(name="Work", pool="p", script="true"),
    Step(name="Later", pool="p", script="true")]).model_dump_json()


def add_run(store, node="", status=QUEUED, started=False, waiting=""):
    with store.write() as session:
        run = Run(runbook="r", environment="e", definition=DEFINITION, node=node,
                  status=status, started_at=utcnow() if started else None, waiting=waiting)
        session.add(run)
        session.flush()
        return run.id


def test_every_queued_run_is_claimed_by_exactly_one_of_several_nodes(make_store):
    store = make_store()
    queued = [add_run(store) for _ in range(60)]
    theirs = add_run(store, node="ops-9")  # claimed already
    started = add_run(store, status=RUNNING, started=True)  # not queued
    # Each claimer with its own connections, as a node has.
    claimers = [make_store() for _ in range(4)]

    def claim_all(index):
        got = []
        while batch := claim_queued(claimers[index], f"ops-{index}", 3):
            got += batch
        return got

    with ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(claim_all, range(4)))
    assert sorted(run for runs in claimed for run in runs) == queued  # each once
    with store.read() as session:
        by_run = dict(session.exec(select(Run.id, Run.node)).all())
    for index, runs in enumerate(claimed):
        assert all(by_run[run] == f"ops-{index}" for run in runs)
    assert (by_run[theirs], by_run[started]) == ("ops-9", "")


def test_what_a_lost_node_left_is_taken_over_once_and_it_writes_nothing_until_it_rejoins(
        make_store):
    store = make_store()
    lost, leader = Registry(store, "ops-2"), Registry(make_store(), "ops-1")
    lost.register()
    leader.register()
    running = add_run(store, node="ops-2", status=RUNNING, started=True)
    waiting = add_run(store, node="ops-2", status=WAITING, started=True,
                      waiting=json.dumps({"kind": "manual", "position": 1, "state": {}}))
    unstarted = add_run(store, node="ops-2")
    mine = add_run(store, node="ops-1", status=RUNNING, started=True)
    with store.write() as session:
        worker = Worker(name="w1", host="127.0.0.1")
        session.add(worker)
        session.flush()
        session.add(RunStep(run_id=running, position=1, name="Work", worker="w1",
                            status=RUNNING))
        session.add(RunStep(run_id=running, position=2, name="Later"))
        # One step's processes were recorded (to be killed), one's not yet (nothing to).
        session.add(Lease(worker_id=worker.id, run_id=running, position=1, marker="m1",
                          pgid=4242))
        session.add(Lease(worker_id=worker.id, run_id=running, position=1))
        session.add(Lease(worker_id=worker.id, run_id=mine, position=1, marker="m2",
                          pgid=4343))
        row = session.exec(select(Node).where(Node.name == "ops-2")).one()
        row.heartbeat_at -= timedelta(seconds=nodes.LEASE_S + 5)
        session.add(row)

    leader.heartbeat()
    assert leader.live == {"ops-1"} and leader.left == ["ops-2"] and leader.leads()
    done = take_over(leader.store, "ops-2", "ops-1")
    assert done.lost and done.interrupted == [running] and done.requeued == [unstarted]
    assert list(done.adopted) == [waiting] and done.adopted[waiting]["kind"] == "manual"
    assert (done.orphans, done.freed) == (1, 1)
    again = take_over(leader.store, "ops-2", "ops-1")
    assert not (again.interrupted or again.adopted or again.requeued)

    with store.read() as session:
        runs = {run.id: run for run in session.exec(select(Run)).all()}
        steps = {step.position: step for step in session.exec(
            select(RunStep).where(RunStep.run_id == running)).all()}
        leases = session.exec(select(Lease.run_id, Lease.orphan)).all()
        row = session.exec(select(Node).where(Node.name == "ops-2")).one()
    interrupted = runs[running]
    assert (interrupted.status, interrupted.node) == (INTERRUPTED, "ops-1")
    assert interrupted.reason.startswith("node ops-2 stopped answering (its last heartbeat "
                                         "was ") and interrupted.finished_at is not None
    assert steps[1].status == INTERRUPTED and steps[2].status == SKIPPED
    assert (runs[waiting].status, runs[waiting].node) == (WAITING, "ops-1")
    assert (runs[unstarted].status, runs[unstarted].node) == (QUEUED, "")
    assert (runs[mine].status, runs[mine].node) == (RUNNING, "ops-1")
    orphaned = [orphan for run, orphan in leases if run == running]
    assert len(orphaned) == 1 and "node ops-2 stopped answering" in orphaned[0]
    assert [orphan for run, orphan in leases if run == mine] == [""]
    [chunk] = read(store, running)
    assert chunk["stream"] == "workdeck" and "\tinterrupted: node ops-2 stopped" in \
        chunk["lines"]
    assert row.lost_at is not None and row.taken_over_by == "ops-1"

    leader.heartbeat()
    assert leader.left == []  # nothing of ops-2's is unfinished now
    if store.dialect != "postgresql":
        return  # one SQLite server per store: nobody to fence
    # The lost node comes back: each of its writes is refused, until it has stopped
    # what it ran and rejoined.
    with pytest.raises(Fenced, match="ops-1 took over its runs"), store.write() as session:
        run = session.get(Run, running)
        run.status = "succeeded"
        session.add(run)
    lost.heartbeat()
    assert lost.lost_by == "ops-1" and not lost.leads()
    lost.rejoin()
    assert lost.lost_by == ""
    with store.write() as session:
        session.add(Run(runbook="r", environment="e", definition="{}", node="ops-2"))
    with store.read() as session:
        assert session.get(Run, running).status == INTERRUPTED


def test_a_node_that_stopped_leaves_its_waiting_runs_to_be_adopted(make_store):
    store = make_store()
    gone, leader = Registry(store, "ops-2"), Registry(store, "ops-1")
    gone.register()
    leader.register()
    waiting = add_run(store, node="ops-2", status=WAITING, started=True,
                      waiting=json.dumps({"kind": "failure", "position": 2, "state": {}}))
    gone.stopped()
    leader.heartbeat()
    assert leader.left == ["ops-2"]
    done = take_over(store, "ops-2", "ops-1")
    assert not done.lost and list(done.adopted) == [waiting]
    with store.read() as session:
        assert session.get(Run, waiting).node == "ops-1"
        assert session.exec(select(Node.lost_at).where(Node.name == "ops-2")).one() is None


def test_a_server_recovers_only_its_own_runs_and_takes_over_a_lost_nodes(workdeck):
    from test_run_promises import restart
    from test_runs import wait_run

    from backend.store.db import Store

    with workdeck.client() as client:
        me = client.get("/api/server")["node"]
    assert workdeck.cli("server", "stop").code == 0
    workdeck.process.wait(20)
    store = Store(workdeck.database or workdeck.data_dir.database)
    try:
        own = add_run(store, node=me, status=RUNNING, started=True)
        other = add_run(store, node="ops-far", status=RUNNING, started=True)
        with store.write() as session:
            session.add(Node(name="ops-far", host="elsewhere", pid=1))
    finally:
        store.close()
    restart(workdeck, polite=False)  # stopped already: started again
    mine = wait_run(workdeck, own, lambda r: r["status"] == INTERRUPTED)
    assert mine["reason"] == "the server stopped while this run was running"
    with workdeck.client() as client:
        assert client.get(f"/api/runs/{other}")["status"] == RUNNING  # ops-far's, alive
    store = Store(workdeck.database or workdeck.data_dir.database)
    try:
        with store.write() as session:
            row = session.exec(select(Node).where(Node.name == "ops-far")).one()
            row.heartbeat_at -= timedelta(seconds=nodes.LEASE_S + 5)
            session.add(row)
    finally:
        store.close()
    # The server leads (the only live node): within a heartbeat it takes over.
    taken = wait_run(workdeck, other, lambda r: r["status"] == INTERRUPTED,
                     timeout=3 * nodes.HEARTBEAT_S)
    assert taken["reason"].startswith("node ops-far stopped answering")
    assert "took over from node ops-far (lost): 1 runs interrupted" in workdeck.log()
