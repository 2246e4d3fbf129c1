"""The run engine keeps its promises: every log line kept under load, cleanup steps after
an abort or a cancel, "all" steps retried and reported per worker."""

from __future__ import annotations

import json

from test_runs import import_runbook, launch, log_lines, setup_fleet, wait_run


def test_many_runs_onto_few_slots_keep_every_log_line(workdeck, ssh_servers, client_key,
                                                      tmp_path):
    # Two workers of one slot each: ten runs at once queue for them, and each ends while
    # others start, flush and close their logs; three batches catch an intermittent loss.
    for i in range(2):
        server = ssh_servers(f"slot{i}")
        assert workdeck.cli("worker", "add", f"t-slot-worker-0{i + 1}", "--host",
                            server.host, "--port", str(server.port), "--key",
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
