"""Runs end to end: a real server, real SSH workers, the CLI and the API."""

from __future__ import annotations

import json
import signal

import pytest
from conftest import both_stores, start_workdeck
from waiting import eventually

THREE_STEPS = """
name = "Three steps"
description = "greet, fan out, finish"

[variables]
who = "world"
[variables.token]
sensitive = true

[pools.WebPool]
Test = "Web Pool"
Production = "Web Pool"

[[steps]]
name = "Greet"
pool = "WebPool"
script = '''
echo "hello $who"
echo "token=$token"
echo "to stderr" >&2
'''

[[steps]]
name = "Everywhere"
pool = "WebPool"
run_on = "all"
script = "echo on $WORKDECK_WORKER"

[[steps]]
name = "Finish"
pool = "Web Pool"
script = "echo finished"
"""

pytestmark = both_stores


def setup_fleet(workdeck, ssh_servers, client_key, count=2, pool="Web Pool"):
    servers = []
    for i in range(count):
        server = ssh_servers(f"w{i}")
        result = workdeck.cli("worker", "add", f"t-web-local-worker-0{i + 1}", "--host",
                              server.host, "--port", str(server.port), "--key-path",
                              str(client_key), "--pool", pool, "--trust-host-key")
        assert result.code == 0, result.err
        servers.append(server)
    assert workdeck.cli("check").code == 0
    for env in ("Test", "Production"):
        workdeck.cli("env", "add", env)
    return servers


def import_runbook(workdeck, tmp_path, text, name="runbook.toml"):
    path = tmp_path / name
    path.write_text(text)
    result = workdeck.cli("runbook", "import", str(path))
    assert result.code == 0, result.err
    return path


def wait_run(workdeck, run_id, predicate, timeout=20):
    def current():
        with workdeck.client() as client:
            run = client.get(f"/api/runs/{run_id}")
        return predicate(run) and run

    return eventually(current, timeout=timeout, what=f"run {run_id}'s state")


def printed(workdeck, run_id, text):
    """Wait until the run's log holds a line `text` (the step is under way)."""
    eventually(lambda: any(line["text"] == text for line in log_lines(workdeck, run_id)),
               what=f"{text!r} in the log")


def launch(workdeck, runbook, env="Test", **options):
    with workdeck.client() as client:
        return client.post("/api/runs", {"runbook": runbook, "environment": env,
                                         "variables": options.pop("variables", {}),
                                         **options})


def log_lines(workdeck, run_id):
    from wire.logcodec import expand

    with workdeck.client() as client:
        return [line for event, data in client.stream_events(f"/api/runs/{run_id}/log")
                if event == "chunks" for chunk in data for line in expand(chunk)]


def test_three_steps_follow_exit_codes_and_masking(workdeck, ssh_servers, client_key,
                                                   tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key)
    import_runbook(workdeck, tmp_path, THREE_STEPS)
    result = workdeck.cli("run", "Three steps", "--env", "Production", "--var", "who=ops",
                          "--var", "token=s3cr3t-Value", "--follow")
    assert result.code == 0, result.out + result.err
    out = result.out
    assert "hello ops" in out and "token=********" in out and "s3cr3t-Value" not in out
    assert "! to stderr" in out  # stderr is marked apart from stdout
    assert "on t-web-local-worker-01" in out and "on t-web-local-worker-02" in out
    assert "finished" in out
    runs = json.loads(workdeck.cli("runs", "list", "--json").out)
    [listed] = runs
    assert "steps" not in listed and listed["step_count"] == 3  # `runs show` has them
    run = json.loads(workdeck.cli("runs", "show", str(listed["id"]), "--json").out)
    assert run["status"] == "succeeded" and run["variables"] == {"who": "ops"}
    assert run["sensitive"] == ["token"]
    steps = run["steps"]
    assert [s["position"] for s in steps] == [1, 2, 2, 3]
    assert all(s["status"] == "succeeded" for s in steps)
    assert "fewest" in steps[0]["worker_reason"]  # why this worker was chosen is recorded
    assert steps[0]["reason"] == ""  # it went well: nothing more to say
    # A finished run's log is all there, numbered without gaps, with stream and step.
    lines = log_lines(workdeck, run["id"])
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    stderr = [line for line in lines if line["stream"] == "stderr"]
    assert [line["text"] for line in stderr] == ["to stderr"] and stderr[0]["position"] == 1
    # The sensitive value is in neither the log nor the database file.
    for path in workdeck.data_dir.root.glob("workdeck.db*"):
        assert b"s3cr3t-Value" not in path.read_bytes()
    exported = workdeck.cli("runbook", "export", "Three steps").out
    again = tmp_path / "again.toml"
    again.write_text(exported)
    assert workdeck.cli("runbook", "import", str(again)).code == 0
    assert workdeck.cli("runbook", "export", "Three steps").out == exported


def test_failed_run_exits_1_and_bad_launches_are_refused(workdeck, ssh_servers, client_key,
                                                         tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, THREE_STEPS)
    import_runbook(workdeck, tmp_path, """
name = "Fails"
[[steps]]
name = "Boom"
pool = "Web Pool"
script = "echo about to fail; echo 'no space left on /var' >&2; exit 7"
[[steps]]
name = "Only on failure"
pool = "Web Pool"
condition = "failure"
script = "echo cleaning up"
""", "fails.toml")
    result = workdeck.cli("run", "Fails", "--env", "Test", "--follow")
    assert result.code == 1
    assert "cleaning up" in result.out and "exit status 7" in result.out
    # The failed step says why in its own words: its last line on stderr.
    [failed] = json.loads(workdeck.cli("runs", "list", "--json").out)
    boom = json.loads(workdeck.cli("runs", "show", str(failed["id"]), "--json").out)
    assert boom["steps"][0]["reason"] == "exit status 7: no space left on /var"
    cases = [
        (["run", "Ghost", "--env", "Test"], "No runbook is named 'Ghost'"),
        (["run", "Fails", "--env", "Staging"], "No environment is named 'Staging'"),
        (["run", "Fails"], "Say which environment"),
        (["run", "Three steps", "--env", "Test", "--var", "nope=1"], "has no variable 'nope'"),
        (["run", "Three steps", "--env", "Test"], "Variable 'token' needs a value"),
    ]
    for args, expected in cases:
        got = workdeck.cli(*args)
        assert got.code != 0 and expected in got.err, (args, got.err)
    workdeck.cli("env", "add", "Development")
    got = workdeck.cli("run", "Three steps", "--env", "Development", "--var", "token=xyzw")
    assert got.code == 1 and "no value for Development" in got.err
    assert len(json.loads(workdeck.cli("runs", "list", "--json").out)) == 1


def test_malformed_runbook_files_are_refused_whole(workdeck, tmp_path):
    bad = {
        "syntax.toml": ("name = \"x\n", "not valid TOML"),
        "field.toml": ("name = \"x\"\n[[steps]]\nname = \"a\"\nscript = \"true\"\n"
                       "run_on = \"some\"\n", "steps[1].run_on"),
        "typo.toml": ("name = \"x\"\n[[steps]]\nname = \"a\"\nscrpt = \"true\"\n",
                      "unknown field 'scrpt'"),
        "secret.toml": ("name = \"x\"\n[variables.t]\nsensitive = true\ndefault = \"pw\"\n"
                        "[[steps]]\nname = \"a\"\nscript = \"true\"\n", "variables.t.default"),
    }
    for name, (text, expected) in bad.items():
        path = tmp_path / name
        path.write_text(text)
        result = workdeck.cli("runbook", "import", str(path))
        assert result.code == 1 and expected in result.err and name in result.err, result.err
    assert json.loads(workdeck.cli("runbook", "list", "--json").out) == []


def test_guided_failure_retry_skip_abort(workdeck, ssh_servers, client_key, tmp_path):
    [server, *_] = setup_fleet(workdeck, ssh_servers, client_key, count=1)
    flag = server.root / "fixed"
    import_runbook(workdeck, tmp_path, f"""
name = "Flaky"
[[steps]]
name = "Needs a fix"
pool = "Web Pool"
script = "test -e {flag} || {{ echo 'not fixed yet' >&2; exit 1; }}; echo fixed"
[[steps]]
name = "After"
pool = "Web Pool"
script = "echo after"
""")
    run = launch(workdeck, "Flaky", guided=True)
    waiting = wait_run(workdeck, run["id"], lambda r: r["status"] == "waiting")
    assert waiting["waiting"]["actions"] == ["abort", "retry", "skip"]
    flag.write_text("yes")
    assert workdeck.cli("runs", "decide", str(run["id"]), "retry").code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded" and done["steps"][0]["attempt"] == 2

    flag.unlink()
    run = launch(workdeck, "Flaky", guided=True)
    wait_run(workdeck, run["id"], lambda r: r["status"] == "waiting")
    assert workdeck.cli("runs", "decide", str(run["id"]), "skip").code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded"
    assert [s["status"] for s in done["steps"]] == ["skipped", "succeeded"]

    run = launch(workdeck, "Flaky", guided=True)
    wait_run(workdeck, run["id"], lambda r: r["status"] == "waiting")
    wrong = workdeck.cli("runs", "decide", str(run["id"]), "approve")
    assert wrong.code == 1 and "waiting for abort or retry or skip" in wrong.err
    assert workdeck.cli("runs", "decide", str(run["id"]), "abort", "--note",
                        "not today").code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed" and done["steps"][1]["status"] == "skipped"
    audit = json.loads(workdeck.cli("audit", "--json").out)
    assert any(e["action"] == "run.abort" and "not today" in e["detail"] for e in audit)


def test_step_through_and_manual_step(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Careful"
[[steps]]
name = "One"
pool = "Web Pool"
script = "echo one"
[[steps]]
name = "Approve"
manual = "Look at the dashboard, then approve."
[[steps]]
name = "Two"
pool = "Web Pool"
script = "echo two"
""")
    run = launch(workdeck, "Careful", step_through=True)
    first = wait_run(workdeck, run["id"], lambda r: r["status"] == "waiting")
    assert first["waiting"]["position"] == 1 and "continue" in first["waiting"]["actions"]
    assert first["steps"][0]["status"] == "queued"  # nothing ran before the operator said
    workdeck.cli("runs", "decide", str(run["id"]), "continue")
    second = wait_run(workdeck, run["id"], lambda r: r["waiting"] and
                      r["waiting"]["position"] == 2)
    workdeck.cli("runs", "decide", str(run["id"]), "continue")
    manual = wait_run(workdeck, run["id"], lambda r: r["waiting"] and
                      r["waiting"]["actions"] == ["abort", "approve"])
    assert "Look at the dashboard" in manual["waiting"]["prompt"]
    assert second["steps"][0]["status"] == "succeeded"
    workdeck.cli("runs", "decide", str(run["id"]), "approve", "--note", "dashboard green")
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 3)
    workdeck.cli("runs", "decide", str(run["id"]), "skip")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert [s["status"] for s in done["steps"]] == ["succeeded", "succeeded", "skipped"]
    assert "approved by" in done["steps"][1]["reason"]
    assert "dashboard green" in done["steps"][1]["reason"]


def test_cancel_kills_the_remote_processes(workdeck, ssh_servers, client_key, tmp_path):
    [_server] = setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Long"
[[steps]]
name = "Sleepy"
pool = "Web Pool"
script = "echo started; sleep 397 & sleep 398; echo never"
""")
    run = launch(workdeck, "Long")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    printed(workdeck, run["id"], "started")
    result = workdeck.cli("runs", "cancel", str(run["id"]))
    assert result.code == 0 and "cancelled" in result.out
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled" and done["steps"][0]["status"] == "cancelled"
    import subprocess

    # Durations no other test uses: a step another test left behind is not this one's.
    left = subprocess.run(["pgrep", "-f", "sleep 39[78]"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the step's processes outlived the cancel"
    follow = workdeck.cli("runs", "log", str(run["id"]), "--follow")
    assert follow.code == 3 and "started" in follow.out


def test_dropped_connection_marks_the_step_lost(workdeck, ssh_servers, client_key, tmp_path):
    [server] = setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Dropped"
[[steps]]
name = "Long"
pool = "Web Pool"
script = "echo before; sleep 30; echo after"
""")
    run = launch(workdeck, "Dropped")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    printed(workdeck, run["id"], "before")
    ssh_servers.stop(server)  # the worker goes away mid-step
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=30)
    assert done["status"] == "failed"
    assert done["steps"][0]["status"] == "lost", done
    assert "without an exit status" in done["steps"][0]["reason"]


def test_hostile_output_is_cleaned_and_kept(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, r"""
name = "Hostile"
[[steps]]
name = "Noise"
pool = "Web Pool"
script = '''
printf '\033[31mred\033[0m \033]0;title\007[bold]markup[/bold]\n'
printf 'progress 10%%\rprogress 100%%\n'
printf 'bad \377\376 bytes\n'
head -c 2000000 /dev/zero | tr '\0' x; echo
echo after
'''
""")
    result = workdeck.cli("run", "Hostile", "--env", "Test", "--follow", "--json")
    assert result.code == 0, result.err
    lines = [json.loads(x) for x in result.out.splitlines() if x.startswith("{")]
    texts = [line["text"] for line in lines if line["stream"] == "stdout"]
    assert len(texts) == 5, result.out[-3000:] + result.err
    assert texts[1] == "progress 100%"
    assert texts[2] == "bad \ufffd\ufffd bytes"
    assert texts[3].startswith("xxxx") and texts[3].endswith("more characters cut]")
    assert len(texts[3]) < 20_000
    assert texts[4] == "after"
    assert all("\x1b" not in t and "\r" not in t for t in texts)


def test_killed_server_leaves_runs_interrupted(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Interrupted"
[[steps]]
name = "Long"
pool = "Web Pool"
script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.1; done; sleep 30"
""")
    run = launch(workdeck, "Interrupted")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    printed(workdeck, run["id"], "line 10")  # the ten lines are out and stored
    workdeck.process.send_signal(signal.SIGKILL)
    workdeck.process.wait(10)
    _data_dir, workdeck.process = start_workdeck(workdeck.data_dir.root.parent,
                                                 workdeck.home, database=workdeck.database)
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "interrupted"
    assert "server stopped" in done["reason"]
    assert done["steps"][0]["status"] == "interrupted"
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert [t for t in texts if t.startswith("line ")] == [f"line {i}" for i in range(1, 11)]
    # The step's slot is held until what is left of it on the worker is killed (here the
    # SSH server ended it with the connection), then given back: a new run gets it.
    with workdeck.client() as client:
        eventually(lambda: client.get("/api/pools/Web Pool")["leased"] == 0,
                   what="the orphaned step's slot given back")
    again = launch(workdeck, "Interrupted")
    wait_run(workdeck, again["id"], lambda r: r["steps"][0]["status"] == "running")
    workdeck.cli("runs", "cancel", str(again["id"]))


@pytest.mark.parametrize("count", [3])
def test_capacity_makes_steps_wait_not_fail(workdeck, ssh_servers, client_key, tmp_path,
                                            count):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    with workdeck.client() as client:
        client.delete("/api/workers/t-web-local-worker-01")
    server = ssh_servers("solo")
    workdeck.cli("worker", "add", "t-solo-local-worker-01", "--host", server.host, "--port",
                 str(server.port), "--key-path", str(client_key), "--pool", "Web Pool",
                 "--capacity", "1", "--trust-host-key")
    workdeck.cli("check")
    import_runbook(workdeck, tmp_path, """
name = "Slot"
[[steps]]
name = "Hold"
pool = "Web Pool"
script = "sleep 0.5; echo done"
""")
    runs = [launch(workdeck, "Slot") for _ in range(count)]
    finished = [wait_run(workdeck, r["id"], lambda r: r["finished_at"]) for r in runs]
    assert all(r["status"] == "succeeded" for r in finished)
    lines = [t["text"] for r in runs for t in log_lines(workdeck, r["id"])]
    assert any("waiting for a free slot" in t for t in lines)


def test_a_late_follower_gets_history_then_the_live_tail(workdeck, ssh_servers, client_key,
                                                         tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Trickle"
[[steps]]
name = "Slowly"
pool = "Web Pool"
script = "for i in $(seq 1 40); do echo tick $i; sleep 0.05; done"
""")
    run = launch(workdeck, "Trickle")
    printed(workdeck, run["id"], "tick 20")  # half of it is out before this follower comes
    from wire.logcodec import expand

    with workdeck.client() as client:
        lines = [line for event, data in client.stream_events(
            f"/api/runs/{run['id']}/log", {"follow": "true"})
            if event == "chunks" for chunk in data for line in expand(chunk)]
    seqs = [line["seq"] for line in lines]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    ticks = [line["text"] for line in lines if line["text"].startswith("tick")]
    assert ticks == [f"tick {i}" for i in range(1, 41)]
    assert all(line["at"] > 0 for line in lines)  # each line has its arrival time


def test_a_follower_far_behind_is_moved_to_the_live_tail(workdeck, ssh_servers, client_key,
                                                         tmp_path):
    """A console keeps the last lines only: rather than being sent what it would drop, it
    is told how many lines it skips and gets the tail, numbered on without a gap."""
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Burst"
[[steps]]
name = "Burst then wait"
pool = "Web Pool"
script = "seq 1 30000; sleep 30"
""")
    run = launch(workdeck, "Burst")
    from wire.logcodec import expand

    eventually(lambda: any(line["text"] == "30000"  # the burst is stored
                           for line in log_lines(workdeck, run["id"])[-5:]))
    events = []
    with workdeck.client() as client:
        for event, data in client.stream_events(f"/api/runs/{run['id']}/log",
                                                {"follow": "true", "keep": "100"}):
            events.append((event, data))
            if event == "chunks" and any(line["text"] == "30000"
                                         for chunk in data for line in expand(chunk)):
                break
        client.post(f"/api/runs/{run['id']}/cancel")
    (first, skipped), *rest = events
    assert first == "skipped" and skipped["after"] == 0 and skipped["to"] > 29_000
    lines = [line for event, data in rest for chunk in data for line in expand(chunk)]
    assert [line["seq"] for line in lines] == list(range(skipped["to"] + 1,
                                                         skipped["to"] + 1 + len(lines)))
    assert len(lines) <= 100 and lines[-1]["text"] == "30000"
    assert all(line["at"] > 0 for line in lines)  # a chunk cut in its middle keeps times


async def test_the_output_limit_truncates_with_a_marker(run_store):
    from backend.runs.loghub import LogHub
    from backend.runs.logstore import RunLog, read
    from wire.logcodec import expand

    store = run_store
    log = RunLog(store, LogHub(), 1, secrets=["hunter2"], output_limit=1000)
    log.start()
    await log.output(1, "w", "stdout", b"password is hunter2\n" + b"x" * 100 + b"\n")
    for _ in range(20):
        await log.output(1, "w", "stdout", b"y" * 99 + b"\n")
    log.end_stream(1, "w")
    await log.close()
    lines = [line for chunk in read(store, 1) for line in expand(chunk)]
    assert lines[0]["text"] == "password is ********"
    assert any("output limit of" in line["text"] for line in lines)
    assert sum(1 for line in lines if line["text"].startswith("y")) < 20
