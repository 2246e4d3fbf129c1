"""A run's log keeps every line: closing it while a write waits for a busy thread pool,
or while the store is slow, loses nothing."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import both_stores

from backend.runs import logstore
from backend.runs.loghub import LogHub
from backend.runs.logstore import RunLog, read
from backend.store.models import Run
from wire.logcodec import expand

pytestmark = both_stores


@pytest.fixture
def store(run_store):
    return run_store


def stored_texts(store):
    return [line["text"] for chunk in read(store, 1, limit=10**9) for line in expand(chunk)]


class Followed(LogHub):
    """A hub that remembers every batch handed to followers, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[tuple[int, int]] = []

    def stored(self, run_id, chunks):
        self.handed += [(c["first_seq"], c["last_seq"]) for c in chunks]
        super().stored(run_id, chunks)


async def test_close_while_the_flush_waits_for_a_busy_thread_pool(store):
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(pool)
    hub = Followed()
    log = RunLog(store, hub, 1, secrets=[])
    log.start()
    await log.output(1, "w", "stdout", b"start\n")
    # The only thread is busy: the flusher's write queues behind it.
    release = threading.Event()
    busy = loop.run_in_executor(None, release.wait)
    while log._pending:  # until the flusher has taken the batch (its write now queues)
        await asyncio.sleep(0.01)
    await log.output(1, "w", "stdout", b"end\n")
    log.note(1, "w", "step 1 succeeded")
    closing = asyncio.ensure_future(log.close())
    while not log._flusher.cancelling():  # close() has cancelled the flusher mid-write
        await asyncio.sleep(0.01)
    release.set()
    assert await closing is True
    await busy
    assert stored_texts(store) == ["start", "end", "step 1 succeeded"]
    assert hub.handed == sorted(hub.handed) and hub.handed[-1][1] == 3


async def test_a_cancelled_flush_still_stores_its_batch(store, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    insert = logstore._insert

    def slow_insert(*args):
        entered.set()
        release.wait(10)
        insert(*args)

    monkeypatch.setattr(logstore, "_insert", slow_insert)
    hub = Followed()
    log = RunLog(store, hub, 1, secrets=[])
    await log.output(1, "w", "stdout", b"one\ntwo\n")
    flushing = asyncio.ensure_future(log.flush())
    await asyncio.to_thread(entered.wait, 10)
    flushing.cancel()
    for _ in range(5):  # let the cancel reach the flush
        await asyncio.sleep(0)
    assert not flushing.done()  # the cancel waits for the write it cannot stop
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await log.output(1, "w", "stdout", b"three\n")
    assert await log.close() is True
    assert stored_texts(store) == ["one", "two", "three"]
    assert hub.handed == [(1, 2), (3, 3)]


async def test_many_logs_closed_under_a_busy_pool_keep_every_line(store):
    # Ten runs' logs sharing two threads with other store work, all closed at once.
    with store.write() as session:
        session.add_all(Run(runbook="r", environment="e", definition="{}") for _ in range(10))
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
    logs = [RunLog(store, LogHub(), run_id, secrets=[]) for run_id in range(2, 12)]
    for log in logs:
        log.start()
    for round_ in range(20):
        for log in logs:
            await log.output(1, "w", "stdout", f"line {round_}\n".encode())
        # Other store work keeps the threads busy between the flushes.
        await asyncio.gather(*(asyncio.to_thread(__import__("time").sleep, 0.02)
                               for _ in range(4)))
    assert all(await asyncio.gather(*(log.close() for log in logs)))
    for log in logs:
        texts = [line["text"] for chunk in read(store, log.run_id, limit=10**9)
                 for line in expand(chunk)]
        assert texts == [f"line {i}" for i in range(20)], log.run_id
