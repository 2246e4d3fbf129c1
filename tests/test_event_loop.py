"""The server's event loop never blocks: with asyncio's debug mode on (the whole suite runs
with it), no callback uses over 100 ms of the loop thread's CPU during a sweep of 1,000
workers or a flood of a million log lines (backend/loopwatch.py; the clock would also
count the waits for a CPU that the rest of a loaded machine causes), and nothing touches
an asyncio object from a thread or the store from the loop's thread (the workdeck fixture
fails a test whose server logged that)."""

from __future__ import annotations

import json

import pytest
from test_runs import import_runbook, launch, wait_run
from waiting import eventually

SLOW_S = 0.1


@pytest.fixture
def live_servers(ssh_servers):
    return [ssh_servers(f"live{i}") for i in range(10)]


def test_no_slow_callback_during_a_sweep_of_a_thousand_workers(workdeck, live_servers,
                                                               client_key):
    workers = []
    for n in range(1000):
        live = n < 50
        server = live_servers[n % len(live_servers)]
        workers.append({"name": f"t-sweep-local-worker-{n:04d}",
                        "host": "127.0.0.1", "port": server.port if live else 1,
                        "key_path": str(client_key), "trust_host_key": live,
                        "pools": [f"Sweep {n % 20:02d} Worker Pool"]})
    with workdeck.client() as client:
        client.post("/api/workers/import", {"workers": workers})
        since = len(workdeck.log())
        for _ in range(3):  # cold (new connections), then warm
            checked = client.post("/api/checks", {"workers": []})
            assert len(checked) == 1000
        assert sum(1 for w in checked if w["status"] == "healthy") == 50
        # The console's snapshot of the whole fleet, while the fleet is busy.
        snapshot = next(data for event, data in client.stream_events("/api/events")
                        if event == "snapshot")
        assert len(snapshot["worker_rows"]) == 1000
    slow = workdeck.slow_callbacks(since)
    assert not [s for s in slow if s > SLOW_S], (slow, workdeck.log()[since:][-3000:])


def test_no_slow_callback_during_a_million_line_flood(workdeck, ssh_servers, client_key,
                                                      tmp_path):
    server = ssh_servers()
    workdeck.cli("worker", "add", "t-flood-local-worker-01", "--host", server.host, "--port",
                 str(server.port), "--key-path", str(client_key), "--pool", "Flood Pool",
                 "--trust-host-key")
    assert workdeck.cli("check").code == 0
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, """
name = "Flood"
[variables.token]
sensitive = true
[[steps]]
name = "A million lines"
pool = "Flood Pool"
script = "seq 1 1000000; echo $token"
""")
    since = len(workdeck.log())
    run = launch(workdeck, "Flood", variables={"token": "a-secret-token"})
    # A follower too, as a console would be.
    with workdeck.client() as client:
        count = 0
        for event, data in client.stream_events(f"/api/runs/{run['id']}/log",
                                                {"follow": "true"}):
            if event == "chunks":
                count += sum(chunk["last_seq"] - chunk["first_seq"] + 1 for chunk in data)
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=120)
    assert done["status"] == "succeeded"
    assert count >= 1_000_001
    eventually(lambda: workdeck.slow_callbacks(since) is not None)
    slow = workdeck.slow_callbacks(since)
    assert not [s for s in slow if s > SLOW_S], (slow, workdeck.log()[since:][-3000:])
    assert json.dumps(done)  # the run is whole


async def test_the_suite_runs_in_asyncio_debug_mode(workdeck):
    import asyncio
    import os

    assert asyncio.get_running_loop().get_debug()
    assert os.environ.get("PYTHONASYNCIODEBUG") == "1"  # inherited by every server
    assert "asyncio" not in workdeck.log() or "Non-thread-safe" not in workdeck.log()
