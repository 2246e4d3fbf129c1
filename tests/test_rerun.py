"""Rerunning a run through the real server and command line: from its failed step (the
steps before it not run again), with the runbook as that run had it, its values, and its
sensitive values given again; the two runs name each other; what cannot be rerun is
refused with a sentence."""

from __future__ import annotations

import json

from test_runs import import_runbook, log_lines, setup_fleet, wait_run

DEPLOY = """
name = "Deploy"
[variables]
version = "1.0"
[variables.token]
sensitive = true
[[steps]]
name = "Backup"
pool = "Web Pool"
script = "echo backup $version >> {tmp}/backups"
[[steps]]
name = "Apply"
pool = "Web Pool"
script = '''
echo "apply $version with $token"
if [ -e {tmp}/broken ]; then echo "the database said no" >&2; exit 3; fi
'''
[[steps]]
name = "Verify"
pool = "Web Pool"
script = "echo verify {said}"
"""


def test_a_failed_run_reruns_from_its_failed_step_as_it_was(workdeck, ssh_servers,
                                                             client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, DEPLOY.format(tmp=tmp_path, said="first"))
    (tmp_path / "broken").touch()
    (tmp_path / "token").write_text("s3cret-token-value\n")
    launched = workdeck.cli("run", "Deploy", "--env", "Test", "--var", "version=2.5",
                            "--var", f"token=@{tmp_path / 'token'}")
    assert launched.code == 0, launched.err
    first = wait_run(workdeck, int(launched.out), lambda r: r["finished_at"])
    assert first["status"] == "failed"
    # The runbook changes meanwhile: a rerun runs it as the first run had it.
    import_runbook(workdeck, tmp_path, DEPLOY.format(tmp=tmp_path, said="second"))
    (tmp_path / "broken").unlink()

    # Sensitive values are never kept for a rerun: without them it is refused.
    refused = workdeck.cli("runs", "rerun", str(first["id"]), "--from-failed")
    assert (refused.code, refused.err) == (1, "workdeck: Variable 'token' needs a value.\n")
    again = workdeck.cli("runs", "rerun", str(first["id"]), "--from-failed",
                         "--var", f"token=@{tmp_path / 'token'}")
    assert again.code == 0, again.err
    second_id = int(again.out.split()[1].rstrip(":"))
    assert again.out == (f"run {second_id}: rerun of run {first['id']} from step 2 (Apply); "
                         "step 1 is not run again\n")
    second = wait_run(workdeck, second_id, lambda r: r["finished_at"])
    assert second["status"] == "succeeded"
    assert (second["rerun_of"], second["from_step"]) == (first["id"], 2)
    assert second["variables"] == {"version": "2.5"}
    steps = {s["position"]: s for s in second["steps"]}
    assert steps[1]["status"] == "skipped"
    assert steps[1]["reason"] == (f"not run again: rerun of run {first['id']} from step 2 "
                                  "(Apply)")
    assert [steps[2]["status"], steps[3]["status"]] == ["succeeded", "succeeded"]
    assert (tmp_path / "backups").read_text() == "backup 2.5\n"  # the backup ran once
    texts = [line["text"] for line in log_lines(workdeck, second_id)]
    assert "apply 2.5 with ********" in texts  # given again, and masked again
    assert "verify first" in texts and "verify second" not in texts
    shown = workdeck.cli("runs", "show", str(first["id"]))
    assert f"reruns: run {second_id}" in shown.out
    assert f"why: rerun of run {first['id']} from step 2 (Apply)" in workdeck.cli(
        "runs", "show", str(second_id)).out
    with workdeck.client() as client:
        assert client.get(f"/api/runs/{first['id']}")["reruns"] == [second_id]

    # Whole, with --follow: every step runs, and it exits as `run --follow` does.
    whole = workdeck.cli("runs", "rerun", str(second_id), "--follow",
                         "--var", f"token=@{tmp_path / 'token'}")
    assert whole.code == 0, whole.err
    assert whole.err.startswith(f"run {second_id + 1}: rerun of run {second_id}\n")
    assert (tmp_path / "backups").read_text() == "backup 2.5\nbackup 2.5\n"

    for args, said in [
            (("--from-step", "5"), f"Run {first['id']}'s runbook has steps 1 to 3: there is "
                                   "no step 5."),
            (("--from-failed",), f"Run {second_id} has no failed step (it succeeded): rerun "
                                 "it whole, or from a step you name."),
            (("--from-step", "2", "--from-failed"), "Give --from-step N or --from-failed, "
                                                    "not both."),
            (("--var", "version=3"), f"'version' is not a sensitive variable of this run: "
                                     f"its value is kept from run {second_id}.")]:
        run_id = first["id"] if "5" in args else second_id
        result = workdeck.cli("runs", "rerun", str(run_id), *args,
                              "--var", f"token=@{tmp_path / 'token'}")
        assert (result.code, result.err) == (1, f"workdeck: {said}\n"), args
    unknown = workdeck.cli("runs", "rerun", "999", "--json")
    assert (unknown.code, unknown.err) == (1, "workdeck: No run has the id 999.\n")
    listed = json.loads(workdeck.cli("runs", "list", "--json").out)
    assert [r["rerun_of"] for r in listed] == [second_id, first["id"], None]


async def test_r_on_a_failed_run_in_the_console_reruns_it_from_the_failed_step(
        workdeck, ssh_servers, client_key, tmp_path):
    from test_console import SIZE, until

    from console.app import WorkdeckApp
    from console.screens.modals import RerunDialog
    from console.screens.run import RunScreen

    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, DEPLOY.format(tmp=tmp_path, said="first"))
    (tmp_path / "broken").touch()
    (tmp_path / "token").write_text("s3cret-token-value\n")
    launched = workdeck.cli("run", "Deploy", "--env", "Test",
                            "--var", f"token=@{tmp_path / 'token'}")
    first = wait_run(workdeck, int(launched.out), lambda r: r["finished_at"])
    assert first["status"] == "failed"
    (tmp_path / "broken").unlink()
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("u")  # the Runs view: R on the failed run
        await until(pilot, lambda: app.screen.VIEW_NAME == "Runs")
        await until(pilot, lambda: app.screen.table.selected_key == str(first["id"]))
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, RerunDialog))
        assert app.screen.title_text == f"Rerun run {first['id']} from step 2 (Apply)"
        assert "step 1 is not run again" in app.screen.body
        await pilot.press("enter")  # no value typed: nothing happens yet
        assert isinstance(app.screen, RerunDialog)
        await pilot.press(*"s3cret-token-value", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen)
                    and app.screen.run_id != first["id"])
        second_id = app.screen.run_id
        await until(pilot, lambda: app.screen.run and app.screen.run["finished_at"],
                    timeout=20)
        assert app.screen.run["status"] == "succeeded"
        assert app.screen.run["rerun_of"] == first["id"]
        await pilot.press("escape")  # the first run, opened: it names its rerun
        await pilot.press("colon", *f"run {first['id']}", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen)
                    and app.screen.run_id == first["id"] and app.screen.run is not None)
        await until(pilot, lambda: app.screen.run["reruns"] == [second_id])
        await pilot.press("R")  # from the Run view too; esc takes it back
        await until(pilot, lambda: isinstance(app.screen, RerunDialog))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
    texts = [line["text"] for line in log_lines(workdeck, second_id)]
    assert "apply 1.0 with ********" in texts
