"""The run engine keeps its promises: every log line kept under load, cleanup steps after
an abort or a cancel, "all" steps retried and reported per worker."""

from __future__ import annotations

import json
import re

from conftest import both_stores
from test_runs import import_runbook, launch, log_lines, setup_fleet, wait_run
from waiting import eventually

pytestmark = both_stores


def test_many_runs_onto_few_slots_keep_every_log_line(workdeck, ssh_servers, client_key,
                                                      tmp_path):
    # Two workers of one slot each: ten runs at once queue for them, and each ends while
    # others start, flush and close their logs; three batches catch an intermittent loss.
    for i in range(2):
        server = ssh_servers(f"slot{i}")
        assert workdeck.cli("worker", "add", f"t-slot-worker-0{i + 1}", "--host",
                            server.host, "--port", str(server.port), "--key-path",
                            str(client_key), "--pool", "Slots", "--capacity", "1",
                            "--trust-host-key").code == 0
    assert workdeck.cli("check").code == 0
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, """
name = "Start and end"
[[steps]]
name = "Work"
pool = "Slots"
script = "echo start; sleep 0.2; echo end"
""")
    for _batch in range(3):
        ids = [launch(workdeck, "Start and end")["id"] for _ in range(10)]
        for run_id in ids:
            done = wait_run(workdeck, run_id, lambda r: r["finished_at"], timeout=60)
            assert done["status"] == "succeeded", done
            texts = [line["text"] for line in log_lines(workdeck, run_id)]
            assert "start" in texts and "end" in texts, (run_id, texts)
            assert texts[-1].startswith("step 1 succeeded"), (run_id, texts)
            seqs = [line["seq"] for line in log_lines(workdeck, run_id)]
            assert seqs == list(range(1, len(seqs) + 1))


def statuses(run):
    return [(s["name"], s["status"]) for s in run["steps"]]


ROLLBACK = """
name = "Restart with rollback"
[[steps]]
name = "Drain"
pool = "Web Pool"
script = "echo draining"
[[steps]]
name = "Approve"
manual = "Check the node is drained, then approve."
[[steps]]
name = "Restart"
pool = "Web Pool"
script = "{restart}"
[[steps]]
name = "Only when it went well"
pool = "Web Pool"
script = "echo all good"
[[steps]]
name = "Roll back"
pool = "Web Pool"
condition = "failure"
script = "echo rolling back"
[[steps]]
name = "Re-enable"
pool = "Web Pool"
condition = "always"
script = "echo re-enabled"
"""


def test_abort_at_an_approval_runs_the_cleanup_steps(workdeck, ssh_servers, client_key,
                                                      tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, ROLLBACK.format(restart="echo restarting"))
    run = launch(workdeck, "Restart with rollback", guided=True)
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    assert workdeck.cli("runs", "decide", str(run["id"]), "abort").code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed" and "aborted" in done["reason"]
    assert statuses(done) == [("Drain", "succeeded"), ("Approve", "failed"),
                              ("Restart", "skipped"), ("Only when it went well", "skipped"),
                              ("Roll back", "succeeded"), ("Re-enable", "succeeded")]
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert "rolling back" in texts and "re-enabled" in texts and "restarting" not in texts


def test_abort_after_a_guided_failure_runs_the_cleanup_steps(workdeck, ssh_servers,
                                                             client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, ROLLBACK.format(restart="echo broken; exit 3"))
    run = launch(workdeck, "Restart with rollback", guided=True)
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    workdeck.cli("runs", "decide", str(run["id"]), "approve")
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 3)
    assert workdeck.cli("runs", "decide", str(run["id"]), "abort").code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed"
    assert statuses(done)[2:] == [("Restart", "failed"), ("Only when it went well", "skipped"),
                                  ("Roll back", "succeeded"), ("Re-enable", "succeeded")]


def test_step_through_abort_runs_the_cleanup_steps(workdeck, ssh_servers, client_key,
                                                   tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, ROLLBACK.format(restart="echo restarting"))
    run = launch(workdeck, "Restart with rollback", step_through=True)
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 1)
    workdeck.cli("runs", "decide", str(run["id"]), "continue")
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    workdeck.cli("runs", "decide", str(run["id"]), "continue")
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["actions"] ==
             ["abort", "approve"])
    workdeck.cli("runs", "decide", str(run["id"]), "approve")
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 3)
    assert workdeck.cli("runs", "decide", str(run["id"]), "abort").code == 0
    # The cleanup steps still run; step-through asks before each of them too.
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 5)
    workdeck.cli("runs", "decide", str(run["id"]), "continue")
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 6)
    workdeck.cli("runs", "decide", str(run["id"]), "continue")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed"
    assert statuses(done)[2:] == [("Restart", "skipped"), ("Only when it went well", "skipped"),
                                  ("Roll back", "succeeded"), ("Re-enable", "succeeded")]


def test_cancel_runs_the_cleanup_steps_and_a_second_cancel_stops_them(
        workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, ROLLBACK.format(restart="echo restarting"))
    run = launch(workdeck, "Restart with rollback", guided=True)
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    result = workdeck.cli("runs", "cancel", str(run["id"]))
    assert result.code == 0, result.err
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled" and done["waiting"] is None
    assert statuses(done) == [("Drain", "succeeded"), ("Approve", "cancelled"),
                              ("Restart", "skipped"), ("Only when it went well", "skipped"),
                              ("Roll back", "succeeded"), ("Re-enable", "succeeded")]
    assert all(s["finished_at"] for s in done["steps"] if s["status"] != "skipped")

    # A cleanup step that hangs: the second cancel stops it.
    import_runbook(workdeck, tmp_path, """
name = "Slow cleanup"
[[steps]]
name = "Work"
pool = "Web Pool"
script = "echo working; sleep 300"
[[steps]]
name = "Cleanup"
pool = "Web Pool"
condition = "always"
script = "echo cleaning; sleep 300"
""", "slow.toml")
    run = launch(workdeck, "Slow cleanup")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    assert workdeck.cli("runs", "cancel", str(run["id"])).code == 0
    cleaning = wait_run(workdeck, run["id"], lambda r: r["steps"][1]["status"] == "running")
    assert cleaning["status"] == "running" and cleaning["steps"][0]["status"] == "cancelled"
    assert workdeck.cli("runs", "cancel", str(run["id"])).code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled"
    assert statuses(done) == [("Work", "cancelled"), ("Cleanup", "cancelled")]
    runs = json.loads(workdeck.cli("runs", "list", "--json").out)
    assert all(r["finished_at"] for r in runs)


def rows_by_worker(run, position):
    return {s["worker"]: s for s in run["steps"] if s["position"] == position}


EVERYWHERE = """
name = "Everywhere"
[[steps]]
name = "On each"
pool = "Web Pool"
run_on = "all"
retries = {retries}
script = '''
echo "ran on $WORKDECK_WORKER"
test "$WORKDECK_WORKER" != t-web-local-worker-02 || exit 5
'''
"""


def test_a_retry_of_an_all_step_reruns_only_the_workers_it_failed_on(
        workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=3)
    import_runbook(workdeck, tmp_path, EVERYWHERE.format(retries=1))
    run = launch(workdeck, "Everywhere")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    ran = [t.removeprefix("ran on t-web-local-worker-") for t in texts
           if t.startswith("ran on")]
    assert sorted(ran) == ["01", "02", "02", "03"], texts
    rows = rows_by_worker(done, 1)
    assert rows["t-web-local-worker-01"]["attempt"] == 1
    assert rows["t-web-local-worker-02"]["attempt"] == 2
    assert rows["t-web-local-worker-02"]["status"] == "failed"
    assert any("retrying on t-web-local-worker-02" in t for t in texts)

    # Guided retry goes through the same code.
    import_runbook(workdeck, tmp_path, EVERYWHERE.format(retries=0), "guided.toml")
    run = launch(workdeck, "Everywhere", guided=True)
    wait_run(workdeck, run["id"], lambda r: r["status"] == "waiting")
    workdeck.cli("runs", "decide", str(run["id"]), "retry")
    wait_run(workdeck, run["id"], lambda r: r["status"] == "waiting" and
             rows_by_worker(r, 1)["t-web-local-worker-02"]["attempt"] == 2)
    # The log's lines are stored a moment after the state they led to: wait for them.
    texts = eventually(lambda: (lambda t: sum(x == "ran on t-web-local-worker-02"
                                              for x in t) == 2 and t)(
        [line["text"] for line in log_lines(workdeck, run["id"])]), what="the retry's line")
    assert sum(t == "ran on t-web-local-worker-01" for t in texts) == 1
    workdeck.cli("runs", "decide", str(run["id"]), "skip")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    rows = rows_by_worker(done, 1)
    assert rows["t-web-local-worker-01"]["status"] == "succeeded"  # its result stands
    assert rows["t-web-local-worker-02"]["status"] == "skipped"
    assert "exit status 5" in rows["t-web-local-worker-02"]["reason"]


def test_a_worker_disabled_while_an_all_step_waits_fails_only_its_own_row(
        workdeck, ssh_servers, client_key, tmp_path):
    for i in range(1, 4):
        server = ssh_servers(f"w{i}")
        # worker-01 has one slot and is in a pool of its own too, where a run holds it.
        extra = ["--pool", "Solo", "--capacity", "1"] if i == 1 else []
        assert workdeck.cli("worker", "add", f"t-web-local-worker-0{i}", "--host",
                            server.host, "--port", str(server.port), "--key-path", str(client_key),
                            "--pool", "Web Pool", *extra, "--trust-host-key").code == 0
    assert workdeck.cli("check").code == 0
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, """
name = "Hold"
[[steps]]
name = "Hold"
pool = "Solo"
script = "sleep 300"
""", "hold.toml")
    import_runbook(workdeck, tmp_path, """
name = "All three"
[[steps]]
name = "Each"
pool = "Web Pool"
run_on = "all"
script = "echo on $WORKDECK_WORKER"
""")
    hold = launch(workdeck, "Hold")
    wait_run(workdeck, hold["id"], lambda r: r["steps"][0]["status"] == "running")
    run = launch(workdeck, "All three")
    waiting = wait_run(workdeck, run["id"], lambda r: rows_by_worker(r, 1).get(
        "t-web-local-worker-01", {}).get("status") == "queued" and all(
        s["status"] == "succeeded" for w, s in rows_by_worker(r, 1).items()
        if w != "t-web-local-worker-01"))
    before = rows_by_worker(waiting, 1)
    assert workdeck.cli("worker", "disable", "t-web-local-worker-01").code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    rows = rows_by_worker(done, 1)
    assert rows["t-web-local-worker-01"]["status"] == "failed"
    assert "t-web-local-worker-01 cannot take the step: disabled" in \
        rows["t-web-local-worker-01"]["reason"]
    for worker in ("t-web-local-worker-02", "t-web-local-worker-03"):
        assert rows[worker] == before[worker]  # a finished result is never rewritten
    workdeck.cli("runs", "cancel", str(hold["id"]))


def test_an_all_step_names_the_workers_it_skipped_and_can_require_all(
        workdeck, ssh_servers, client_key, tmp_path):
    servers = setup_fleet(workdeck, ssh_servers, client_key, count=4)
    workdeck.cli("worker", "disable", "t-web-local-worker-01")
    workdeck.cli("worker", "drain", "t-web-local-worker-02")
    ssh_servers.stop(servers[2])
    workdeck.cli("check", "--worker", "t-web-local-worker-03")
    import_runbook(workdeck, tmp_path, """
name = "Everyone"
[[steps]]
name = "Each"
pool = "Web Pool"
run_on = "all"
script = "echo on $WORKDECK_WORKER"
""")
    run = launch(workdeck, "Everyone")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded"
    rows = rows_by_worker(done, 1)
    assert rows["t-web-local-worker-04"]["status"] == "succeeded"
    assert rows["t-web-local-worker-01"]["status"] == "skipped"
    assert rows["t-web-local-worker-01"]["reason"] == "not run on it: disabled"
    assert rows["t-web-local-worker-02"]["reason"] == "not run on it: draining"
    assert rows["t-web-local-worker-03"]["reason"].startswith("not run on it: unavailable")
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert any(t.startswith("step 1 runs on t-web-local-worker-04; not on "
                            "t-web-local-worker-01 (disabled), t-web-local-worker-02 "
                            "(draining), t-web-local-worker-03 (unavailable") for t in texts)
    shown = workdeck.cli("runs", "show", str(run["id"]))
    assert "not run on it: draining" in shown.out

    import_runbook(workdeck, tmp_path, """
name = "Every one or none"
[[steps]]
name = "Each"
pool = "Web Pool"
run_on = "all"
require_all = true
script = "echo on $WORKDECK_WORKER"
""", "strict.toml")
    exported = workdeck.cli("runbook", "export", "Every one or none").out
    assert "require_all = true" in exported
    with workdeck.client() as client:
        plan = client.post("/api/runs/plan", {"runbook": "Every one or none",
                                              "environment": "Test", "variables": {}})
    assert [s["worker"] for s in plan["steps"][0]["would_skip"]] == [
        "t-web-local-worker-01", "t-web-local-worker-02", "t-web-local-worker-03"]
    run = launch(workdeck, "Every one or none")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed"
    rows = rows_by_worker(done, 1)
    assert rows["t-web-local-worker-04"]["status"] == "skipped"
    assert "requires every member of Web Pool" in rows["t-web-local-worker-04"]["reason"]
    assert rows["t-web-local-worker-02"]["status"] == "failed"
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert not any(t.startswith("on t-web") for t in texts)  # it ran nowhere
    assert any("t-web-local-worker-01 (disabled), t-web-local-worker-02 (draining)" in t
               for t in texts)

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[steps]]\nname = "a"\nscript = "true"\nrequire_all = true\n')
    refused = workdeck.cli("runbook", "import", str(bad))
    assert refused.code == 1 and "steps[1].require_all" in refused.err


def test_a_worker_that_cannot_be_reached_is_rechecked_and_a_retry_goes_elsewhere(
        workdeck, ssh_servers, client_key, tmp_path):
    servers = setup_fleet(workdeck, ssh_servers, client_key, count=2)
    ssh_servers.stop(servers[0])  # worker-01 goes down; nothing has checked it since
    import_runbook(workdeck, tmp_path, """
name = "Retried"
[[steps]]
name = "Work"
pool = "Web Pool"
retries = 2
script = "echo done on $WORKDECK_WORKER"
""")
    run = launch(workdeck, "Retried")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded", done
    [row] = done["steps"]
    assert row["worker"] == "t-web-local-worker-02" and row["attempt"] == 2
    assert "not t-web-local-worker-01, where it just failed" in row["worker_reason"]
    down = json.loads(workdeck.cli("worker", "show", "t-web-local-worker-01", "--json").out)
    assert down["status"] == "unavailable"  # the failed step had it checked again
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert any(t.startswith("t-web-local-worker-01 checked again: unavailable") for t in texts)
    assert any("retrying on another worker than t-web-local-worker-01 if one is free in 1s"
               in t for t in texts), texts
    assert "done on t-web-local-worker-02" in texts


def test_retries_on_the_only_worker_back_off_and_stop_once_it_is_down(
        workdeck, ssh_servers, client_key, tmp_path):
    [server] = setup_fleet(workdeck, ssh_servers, client_key, count=1)
    ssh_servers.stop(server)
    import_runbook(workdeck, tmp_path, """
name = "Retried"
[[steps]]
name = "Work"
pool = "Web Pool"
retries = 2
script = "true"
""")
    run = launch(workdeck, "Retried")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed"
    lines = log_lines(workdeck, run["id"])
    attempts = [line for line in lines if "attempt" in line["text"] and " on " in line["text"]
                and line["text"].startswith("step 1 (Work) attempt")]
    assert len(attempts) == 1, lines  # the second try found the worker down: no third
    [row] = done["steps"]
    assert "has no healthy, enabled worker" in row["reason"], row
    retry = next(line for line in lines if "retrying" in line["text"])
    after = next(line for line in lines if line["seq"] > retry["seq"])
    assert after["at"] - retry["at"] >= 0.9  # it waited before trying again (a minimum)


def follow_in_background(workdeck, *args):
    """`workdeck run ... --follow` as its own process; its stderr read as it comes."""
    import os
    import subprocess
    import sys
    import threading

    process = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--data-dir", str(workdeck.data_dir.root),
         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HOME": str(workdeck.home)})
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(process.stderr), daemon=True)
    reader.start()
    return process, seen


def test_a_follower_says_what_a_waiting_run_waits_for(workdeck, ssh_servers, client_key,
                                                      tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Flaky"
[[steps]]
name = "Breaks"
pool = "Web Pool"
script = "echo broken; exit 2"
""")
    process, seen = follow_in_background(workdeck, "run", "Flaky", "--env", "Test",
                                         "--guided", "--follow")
    root = str(workdeck.data_dir.root)
    eventually(lambda: any("is waiting: step 1 (Breaks) failed" in line for line in seen),
               what="the waiting message")
    run_id = int(seen[0].split()[1].rstrip(":"))
    command = f"workdeck --data-dir {root} runs decide {run_id}"
    for action in ("abort", "retry", "skip"):
        assert any(line.strip() == f"{command} {action}" for line in seen), seen
    decided = workdeck.cli("runs", "decide", str(run_id), "abort", "--note", "giving up")
    assert decided.code == 0
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "waiting for an operator: step 1 (Breaks) failed" in out
    assert "abort, decided by" in out and "giving up" in out

    process, seen = follow_in_background(workdeck, "run", "Flaky", "--env", "Test",
                                         "--step-through", "--follow")
    eventually(lambda: any("is next: continue, skip or abort" in line for line in seen),
               what="the step-through question")
    run_id = int(seen[0].split()[1].rstrip(":"))
    workdeck.cli("runs", "decide", str(run_id), "skip")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out + "".join(seen)


def restart(workdeck, polite=True):
    import signal

    from conftest import start_workdeck

    if polite:
        assert workdeck.cli("server", "stop").code == 0
    else:
        workdeck.process.send_signal(signal.SIGKILL)
    workdeck.process.wait(20)
    _data_dir, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home,
                                                 database=workdeck.database)


def test_a_run_waiting_for_a_decision_waits_on_after_a_restart(workdeck, ssh_servers,
                                                               client_key, tmp_path):
    servers = setup_fleet(workdeck, ssh_servers, client_key, count=2)
    flag = servers[0].root / "fixed"
    import_runbook(workdeck, tmp_path, f"""
name = "Across restarts"
[variables.token]
sensitive = true
[[steps]]
name = "Each"
pool = "Web Pool"
run_on = "all"
script = '''
echo "ran on $WORKDECK_WORKER with $token"
test "$WORKDECK_WORKER" != t-web-local-worker-01 || test -e {flag}
'''
[[steps]]
name = "Approve"
manual = "Look, then approve."
[[steps]]
name = "After"
pool = "Web Pool"
script = "echo after with $token"
""")
    run = launch(workdeck, "Across restarts", guided=True,
                 variables={"token": "s3cr3t-Value"})
    run_id = run["id"]
    before = wait_run(workdeck, run_id, lambda r: r["status"] == "waiting")
    restart(workdeck)
    again = wait_run(workdeck, run_id, lambda r: r["waiting"] is not None)
    assert again["status"] == "waiting" and again["waiting"] == before["waiting"]
    assert again["finished_at"] is None
    flag.write_text("fixed")
    assert workdeck.cli("runs", "decide", str(run_id), "retry").code == 0
    # The retry after the restart still runs only where it failed, with the secret.
    manual = wait_run(workdeck, run_id, lambda r: r["waiting"] and
                      r["waiting"]["actions"] == ["abort", "approve"])
    texts = eventually(lambda: (lambda t: t.count(
        "ran on t-web-local-worker-01 with ********") == 2 and t)(
        [line["text"] for line in log_lines(workdeck, run_id)]), what="the retry's line")
    assert texts.count("ran on t-web-local-worker-02 with ********") == 1
    assert rows_by_worker(manual, 2)[""]["status"] == "waiting"

    restart(workdeck, polite=False)  # a crash while waiting: the question stands too
    wait_run(workdeck, run_id, lambda r: r["waiting"] and
             r["waiting"]["actions"] == ["abort", "approve"])
    assert workdeck.cli("runs", "decide", str(run_id), "approve").code == 0
    done = wait_run(workdeck, run_id, lambda r: r["finished_at"])
    assert done["status"] == "succeeded", done
    assert [s["status"] for s in done["steps"]] == ["succeeded"] * 4
    texts = [line["text"] for line in log_lines(workdeck, run_id)]
    assert "after with ********" in texts
    assert any("the server started again" in t for t in texts)


def test_decisions_are_kept_on_the_run_and_decide_answers_with_what_followed(
        workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, ROLLBACK.format(restart="echo broken; exit 3"))
    run = launch(workdeck, "Restart with rollback", guided=True)
    run_id = str(run["id"])
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    approved = workdeck.cli("runs", "decide", run_id, "approve", "--note", "LB shows it drained")
    # The answer is the state that followed: the next step failed and waits again.
    assert approved.code == 0
    assert "approve recorded; now waiting: step 3 (Restart) failed" in approved.out \
        or "approve recorded; now running: step 3 (Restart)" in approved.out, approved.out
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 3)
    retried = workdeck.cli("runs", "decide", run_id, "retry")
    assert "retry recorded; now " in retried.out and "recorded; now waiting for" not in \
        retried.out
    wait_run(workdeck, run["id"], lambda r: r["waiting"] and r["waiting"]["position"] == 3
             and r["steps"][2]["attempt"] == 2)
    aborted = workdeck.cli("runs", "decide", run_id, "abort", "--note", "rolling back")
    assert "abort recorded; now" in aborted.out
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    decisions = [(d["action"], d["position"], d["note"]) for d in done["decisions"]]
    assert decisions == [("approve", 2, "LB shows it drained"), ("retry", 3, ""),
                         ("abort", 3, "rolling back")]
    assert all(d["actor"] and d["at"] for d in done["decisions"])
    shown = workdeck.cli("runs", "show", run_id)
    assert "decisions:" in shown.out and "LB shows it drained" in shown.out
    assert "rolling back" in shown.out
    # The last decision ended it: the answer said so.
    finished = launch(workdeck, "Restart with rollback", guided=True)
    wait_run(workdeck, finished["id"], lambda r: r["waiting"] and
             r["waiting"]["position"] == 2)
    workdeck.cli("runs", "decide", str(finished["id"]), "approve")
    wait_run(workdeck, finished["id"], lambda r: r["waiting"] and
             r["waiting"]["position"] == 3)
    skipped = workdeck.cli("runs", "decide", str(finished["id"]), "skip")
    # Step 4 (or, when it was quick, the cleanup step 6 after it) under way, or the end.
    assert re.search(r"skip recorded; now (running: step [46] |succeeded)", skipped.out), \
        skipped.out


def test_shell_errors_name_the_script_s_own_line(workdeck, ssh_servers, client_key,
                                                  tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Line numbers"
[variables]
who = "ops"
note = '''two
lines'''
[[steps]]
name = "Err"
pool = "Web Pool"
script = '''
echo "first at $LINENO"
set -u
echo "$undefined_variable"
'''
""")
    run = launch(workdeck, "Line numbers")
    wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    lines = log_lines(workdeck, run["id"])
    texts = [line["text"] for line in lines]
    # (TOML drops the newline right after the opening quotes: the echo is line 1.)
    assert "first at 1" in texts
    [error] = [line["text"] for line in lines if line["stream"] == "stderr"]
    assert "line 3: undefined_variable" in error, error


def test_runbook_files_small_refusals(workdeck, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "Good"\n[[steps]]\nname = "a"\nscript = "true"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "Bad"\n[[steps]]\nname = "a"\nscrpt = "true"\n')
    twin = tmp_path / "twin.toml"
    twin.write_text('name = "Good"\n[[steps]]\nname = "b"\nscript = "true"\n')
    # All or none: a bad file among good ones imports nothing.
    result = workdeck.cli("runbook", "import", str(good), str(bad))
    assert result.code == 1 and "bad.toml" in result.err and "Nothing was imported" in \
        result.err
    result = workdeck.cli("runbook", "import", str(good), str(twin))
    assert result.code == 1 and "also defined by" in result.err
    assert json.loads(workdeck.cli("runbook", "list", "--json").out) == []
    assert workdeck.cli("runbook", "import", str(good)).code == 0
    # A byte order mark is not part of the file.
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + b'name = "With BOM"\n[[steps]]\nname = "a"\n'
                                      b'script = "true"\n')
    result = workdeck.cli("runbook", "import", str(bom))
    assert result.code == 0, result.err
    with workdeck.client() as client:
        saved = client.post("/api/runbooks", {"toml": "\ufeff" + bom.read_text(
            encoding="utf-8-sig"), "source": "api"})
    assert saved["name"] == "With BOM"
    # Two steps of one name cannot be told apart: refused.
    same = tmp_path / "same.toml"
    same.write_text('name = "Same"\n[[steps]]\nname = "Drain"\nscript = "true"\n'
                    '[[steps]]\nname = "drain"\nscript = "true"\n')
    result = workdeck.cli("runbook", "import", str(same))
    assert result.code == 1 and "steps[2].name" in result.err and "steps[1]" in result.err
    # No such run: said plainly.
    result = workdeck.cli("runs", "log", "9999")
    assert result.code == 1 and "No run has the id 9999" in result.err
    assert "broke off" not in result.err


def test_a_large_runbook_file_imports_through_the_all_or_none_route(workdeck, tmp_path):
    # Several hundred KB of runbook (long scripts) is a normal file, not an abuse.
    steps = "".join(f'[[steps]]\nname = "s{i}"\nscript = """\n{"echo filler " * 400}\n"""\n'
                    for i in range(60))
    big = tmp_path / "big.toml"
    big.write_text(f'name = "Big"\n{steps}')
    assert big.stat().st_size > 256 * 1024
    result = workdeck.cli("runbook", "import", str(big))
    assert result.code == 0, result.err
