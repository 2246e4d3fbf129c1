"""Lease accounting and pool utilization against a real store (SQLite and PostgreSQL), in
process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from conftest import both_stores
from sqlalchemy import func, update
from sqlmodel import select
from waiting import eventually_async

from backend import fleet
from backend.events import EventBus
from backend.fleet import usage
from backend.runs.leases import Leases, NoWorker
from backend.store.db import Store
from backend.store.models import HEALTHY, UNAVAILABLE, Lease, Pool, Run, UsageSample, Worker
from wire.workers import WorkerCreate

POOL = "Web Pool"
pytestmark = both_stores


@pytest.fixture
def store(make_store):
    return make_store("leases.db")


def fleet_of(store: Store, workers: int, capacity: int) -> list[str]:
    names = [f"t-web-local-worker-{i:02d}" for i in range(1, workers + 1)]
    fleet.add_workers(store, [WorkerCreate(name=n, host="127.0.0.1", port=1, pools=[POOL],
                                           capacity=capacity) for n in names], "test")
    set_status(store, names, HEALTHY)
    return names


def set_status(store: Store, names: list[str], status: str) -> None:
    with store.write() as session:
        session.exec(update(Worker).where(Worker.name.in_(names)).values(check_status=status))


def new_run(store: Store) -> int:
    with store.write() as session:
        run = Run(runbook="r", environment="Test", definition="{}")
        session.add(run)
        session.flush()
        return run.id


def lease_count(store: Store) -> int:
    with store.read() as session:
        return session.exec(select(func.count()).select_from(Lease)).one()


async def test_contending_steps_never_exceed_capacity_and_are_served_in_order(store):
    fleet_of(store, workers=2, capacity=2)  # four slots
    leases = Leases(store)
    run_id = new_run(store)
    busy = 0
    most = 0
    order: list[int] = []

    async def step(position: int) -> None:
        nonlocal busy, most
        granted = await leases.acquire(POOL, run_id, position, step_name=f"step {position}")
        order.append(position)
        busy += 1
        most = max(most, busy)
        await asyncio.sleep(0.05)
        busy -= 1
        await leases.release(granted.lease_id, run_id)

    tasks = []
    for position in range(1, 13):
        tasks.append(asyncio.create_task(step(position)))
        await asyncio.sleep(0.005)  # each asks a little after the one before
    await asyncio.gather(*tasks)
    assert most == 4  # every slot used, none twice
    assert order[:4] == [1, 2, 3, 4]
    assert order[4:] == sorted(order[4:])  # the queue is first come, first served
    assert lease_count(store) == 0 and leases.queue == []


async def test_the_fewest_leased_worker_is_chosen_and_the_reason_kept(store):
    names = fleet_of(store, workers=3, capacity=4)
    leases = Leases(store)
    run_id = new_run(store)
    first = await leases.acquire(POOL, run_id, 1)
    second = await leases.acquire(POOL, run_id, 2)
    assert {first.worker, second.worker} == set(names[:2])  # spread, not stacked
    assert "0 of 4 slots in use, the fewest of 3" in first.worker_reason
    rows = fleet.pool_figures(store)[POOL]
    assert (rows["leased"], rows["capacity"], rows["utilization"]) == (2, 12, round(2 / 12, 3))


async def test_cancelled_waiters_and_a_worker_gone_unavailable_leak_nothing(store):
    names = fleet_of(store, workers=2, capacity=1)
    leases = Leases(store)
    run_id = new_run(store)
    held = [await leases.acquire(POOL, run_id, p) for p in (1, 2)]
    waiting = [asyncio.create_task(leases.acquire(POOL, run_id, p)) for p in (3, 4, 5)]
    await eventually_async(lambda: leases.queued_by_pool() == {POOL: 3})
    assert [w["position"] for w in leases.queue_of(POOL)] == [3, 4, 5]
    waiting[0].cancel()  # the run of the first waiter is cancelled
    await eventually_async(lambda: leases.queued_by_pool() == {POOL: 2})
    # One worker turns unavailable with its step still on it: its slot stays counted
    # (the step holds it) but it takes nothing new.
    set_status(store, [held[0].worker], UNAVAILABLE)
    figures = fleet.pool_figures(store)[POOL]
    assert (figures["leased"], figures["capacity"]) == (2, 2)
    await leases.release(held[0].lease_id, run_id)  # its step is noticed lost and let go
    await leases.release(held[1].lease_id, run_id)
    granted = await asyncio.wait_for(waiting[1], 5)
    assert granted.worker == next(n for n in names if n != held[0].worker)
    await leases.release(granted.lease_id, run_id)
    granted = await asyncio.wait_for(waiting[2], 5)
    await leases.release(granted.lease_id, run_id)
    await eventually_async(lambda: lease_count(store) == 0 and leases.queued_by_pool() == {})
    # Nobody healthy at all: a clear failure, not an endless wait.
    set_status(store, names, UNAVAILABLE)
    with pytest.raises(NoWorker, match="no healthy, enabled worker"):
        await leases.acquire(POOL, run_id, 6)


async def test_a_draining_worker_takes_no_new_leases(store):
    names = fleet_of(store, workers=2, capacity=2)
    leases = Leases(store)
    run_id = new_run(store)
    on_first = await leases.acquire(POOL, run_id, 1, only=names[0])
    fleet.set_draining(store, names[0], True, "test")
    taken = [await leases.acquire(POOL, run_id, p) for p in (2, 3)]
    assert {g.worker for g in taken} == {names[1]}
    figures = fleet.pool_figures(store)[POOL]
    # The draining worker's running step still counts; its free slot does not.
    assert (figures["leased"], figures["capacity"], figures["draining_workers"]) == (3, 3, 1)
    assert fleet.get_worker(store, names[0])["leased"] == 1
    fleet.set_draining(store, names[1], True, "test")
    with pytest.raises(NoWorker, match="2 draining"):
        await leases.acquire(POOL, run_id, 4)
    await leases.release(on_first.lease_id, run_id)
    assert fleet.pool_figures(store)[POOL]["capacity"] == 2


async def test_utilization_is_sampled_when_it_changes_and_thinned_as_it_ages(store):
    fleet_of(store, workers=1, capacity=2)
    bus = EventBus()
    subscription = bus.subscribe()
    leases = Leases(store)
    sampler = usage.Usage(store, leases, bus)
    run_id = new_run(store)
    await sampler.sample()
    granted = await leases.acquire(POOL, run_id, 1)
    changed = await sampler.sample()
    assert changed[POOL]["leased"] == 1 and changed[POOL]["utilization"] == 0.5
    events = [e for e in await subscription.next_batch(0) if e["type"] == "usage"]
    assert events[-1]["data"]["leased"] == 1
    assert await sampler.sample() == {}  # nothing changed: nothing pushed
    await leases.release(granted.lease_id, run_id)
    await sampler.sample()
    points = usage.history(store, POOL)[POOL]
    assert [p[1] for p in points] == [0, 1, 0]
    # Two hours ago, a sample every 10 s: thinned to the busiest per 5 minutes.
    with store.write() as session:
        pool_id = session.exec(select(Pool.id).where(Pool.name == POOL)).one()
        start = datetime.now(UTC) - timedelta(hours=2)
        session.add_all(UsageSample(pool_id=pool_id, at=start + timedelta(seconds=10 * i),
                                   leased=i % 30, capacity=30, queued=0) for i in range(90))
    usage.prune(store)
    with store.read() as session:
        old = session.exec(select(UsageSample.leased).where(
            UsageSample.at < datetime.now(UTC) - timedelta(hours=1))).all()
    assert 3 <= len(old) <= 4 and max(old) == 29  # the peaks survive
