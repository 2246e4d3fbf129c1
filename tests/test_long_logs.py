"""Long logs are reachable whole: the server finds the first error and any text in the
whole log, forwards and backwards, and serves any window of it."""

from __future__ import annotations

import pytest
from test_runs import import_runbook, launch, setup_fleet, wait_run

LINES = 200_000
# Output line k is log line k + 1: the step's opening note is line 1.
LONG = f"""
name = "Long"
[[steps]]
name = "Print"
pool = "Web Pool"
script = '''
seq 1 {LINES} | awk '{{ if ($1 == 9 || $1 == 50000 || $1 == 150001)
  print "ERROR: boom at " $1; else print "line " $1 }}'
echo "fatal: on stderr near the end" >&2
'''
"""


@pytest.fixture
def long_run(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, LONG)
    run = launch(workdeck, "Long")
    wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=120)
    return run["id"]


def find(workdeck, run_id, **params):
    with workdeck.client() as client:
        return client.get(f"/api/runs/{run_id}/log/find", params=params)["line"]


def window(workdeck, run_id, after, limit):
    from wire.logcodec import expand

    with workdeck.client() as client:
        return [line for event, data in client.stream_events(
            f"/api/runs/{run_id}/log", {"after": str(after), "limit": str(limit)})
            if event == "chunks" for chunk in data for line in expand(chunk)]


def test_the_server_finds_in_the_whole_log_and_serves_any_window(workdeck, long_run):
    first = find(workdeck, long_run, errors="true")
    assert first["seq"] == 10 and first["text"] == "ERROR: boom at 9"
    second = find(workdeck, long_run, errors="true", after=10)
    assert second["seq"] == 50_001
    last = find(workdeck, long_run, errors="true", before=LINES + 10)
    assert last["stream"] == "stderr" and last["text"].startswith("fatal")
    assert find(workdeck, long_run, text="BOOM AT 150001")["seq"] == 150_002
    assert find(workdeck, long_run, text="boom", before=150_002)["seq"] == 50_001
    assert find(workdeck, long_run, text="no such text anywhere") is None
    assert find(workdeck, long_run, text="line 5", step=2) is None  # no step 2
    lines = window(workdeck, long_run, after=99_990, limit=20)
    assert [line["seq"] for line in lines] == list(range(99_991, 100_011))
    assert lines[0]["text"] == "line 99990" and lines[0]["at"] > 0  # stamped mid-chunk
    with workdeck.client() as client:
        from console.client import ApiError

        with pytest.raises(ApiError, match="Say what to find"):
            client.get(f"/api/runs/{long_run}/log/find")
