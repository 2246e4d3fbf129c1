"""The real console (Textual run_test) against a real server and real SSH workers."""

from __future__ import annotations

import asyncio
import json
import time

from textual import events
from waiting import eventually

from console.app import WorkdeckApp
from console.screens.modals import HelpScreen, TrustDialog
from console.screens.worker_detail import WorkerDetailScreen
from console.widgets.live_table import LiveTable

SIZE = (160, 45)


async def until(pilot, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            # The state is there; let the view on screen catch up with it (the app shows
            # changes a few times a second, not one by one).
            while pilot.app.changes_pending and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError("the console did not reach the expected state in time")


def add(workdeck, name, server, key, *extra):
    result = workdeck.cli("worker", "add", name, "--host", server.host, "--port",
                          str(server.port), "--key-path", str(key), *extra)
    assert result.code == 0, result.err


def shown(widget) -> str:
    """The text a Static widget shows, as a person would read it."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(widget.content)
    return console.export_text()


def cell(table: LiveTable, row: str, column: str) -> str:
    return table.get_cell(row, column).plain


async def test_dashboard_counts_and_needs_attention(workdeck, ssh_servers, client_key):
    good, stranger = ssh_servers(), ssh_servers()
    add(workdeck, "p-web-local-worker-01", good, client_key, "--trust-host-key")
    add(workdeck, "t-k8s-local-worker-01", stranger, client_key)
    workdeck.cli("check")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        screen = app.screen
        assert screen.VIEW_NAME == "Dashboard"
        assert shown(screen.query_one("#tile-healthy")).split() == ["●", "1", "healthy"]
        assert shown(screen.query_one("#tile-unavailable")).split()[:2] == ["○", "1"]
        attention = screen.query_one("#attention-table", LiveTable)
        assert attention.row_keys() == ["t-k8s-local-worker-01"]
        assert "not trusted" in cell(attention, "t-k8s-local-worker-01", "reason")
        pools = screen.query_one("#pools-table", LiveTable)
        assert "Default Worker Pool" in pools.row_keys()


async def test_workers_view_filters_and_updates_in_place(workdeck, ssh_servers, client_key):
    for name in ("p-web-local-worker-01", "p-web-local-worker-02", "p-db-local-worker-01"):
        add(workdeck, name, ssh_servers(), client_key, "--trust-host-key")
    workdeck.cli("check")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        table = app.screen.query_one("#workers-table", LiveTable)
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("slash", *"web", "enter")
        assert table.row_keys() == ["p-web-local-worker-01", "p-web-local-worker-02"]
        row_before = table.get_row_index("p-web-local-worker-02")
        # A change made elsewhere (the command line) arrives by push and edits one cell.
        await asyncio.to_thread(workdeck.cli, "worker", "disable", "p-web-local-worker-02")
        await until(pilot, lambda: "disabled" in cell(table, "p-web-local-worker-02", "status"))
        assert table.get_row_index("p-web-local-worker-02") == row_before
        assert "healthy" in cell(table, "p-web-local-worker-01", "status")
        await pilot.press("escape")
        assert table.row_count == 3
        # Typed in one burst, as a fast typist or a paste does: "/db" is a filter, not
        # a drain (d) and a jump to the Runbooks view (b).
        for key, char in (("slash", "/"), ("d", "d"), ("b", "b")):
            app.post_message(events.Key(key, char))
        await until(pilot, lambda: table.row_keys() == ["p-db-local-worker-01"])
        assert app.current_mode == "workers"
        assert not app.fleet.workers["p-db-local-worker-01"]["draining"]


async def test_trust_a_host_key_from_the_console(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    add(workdeck, "t-k8s-local-worker-01", server, client_key)
    workdeck.cli("check")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        table = app.screen.query_one("#workers-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TrustDialog))
        text = " ".join(shown(s) for s in app.screen.query("Static"))
        assert server.fingerprint in text
        await pilot.press("y")
        await until(pilot, lambda: app.fleet.workers["t-k8s-local-worker-01"]["status"]
                    == "healthy")
        assert "healthy" in cell(table, "t-k8s-local-worker-01", "status")


async def test_check_now_and_details_with_history(workdeck, ssh_servers, client_key):
    add(workdeck, "d-web-local-worker-01", ssh_servers(), client_key, "--trust-host-key")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        table = app.screen.query_one("#workers-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        before = app.fleet.workers["d-web-local-worker-01"]["checked_at"]
        await pilot.press("c")
        await until(pilot, lambda: app.fleet.workers["d-web-local-worker-01"]["checked_at"]
                    not in (None, before))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, WorkerDetailScreen))
        detail = app.screen
        await until(pilot, lambda: len(detail.history) >= 1)
        facts = shown(detail.query_one("#detail-facts"))
        assert "CPUs" in facts and "Load" in facts
        await pilot.press("escape")
        assert not isinstance(app.screen, WorkerDetailScreen)


async def test_command_line_help_and_palette_views(workdeck):
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("colon", *"pools", "enter")
        assert app.current_mode == "pools"
        await pilot.press("colon", *"workers built", "enter")
        await pilot.pause()
        assert app.current_mode == "workers"
        assert app.screen.filter_text == "built"
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = " ".join(shown(s) for s in app.screen.query("Static"))
        assert "Check" in text and "Filter" in text
        await pilot.press("escape")
        await pilot.press("colon", *"bogus", "enter")
        await pilot.pause()
        assert app.current_mode == "workers"


async def test_new_pool_from_the_console(workdeck):
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("p")
        await pilot.press("n")
        await pilot.press(*"Local Test Worker Pool", "enter", *"test things", "enter")
        table = app.screen.query_one("#pools-table", LiveTable)
        await until(pilot, lambda: "Local Test Worker Pool" in table.row_keys())
    shown = workdeck.cli("pool", "show", "Local Test Worker Pool", "--json")
    assert '"description": "test things"' in shown.out


async def test_hostile_text_is_shown_literally(workdeck, ssh_servers, client_key):
    add(workdeck, "w-hostile", ssh_servers(), client_key, "--trust-host-key")
    with workdeck.client() as client:
        client.put("/api/policy", client.get("/api/policy") | {
            "custom_script": "printf '[bold red]boom[/] \\033[2J\\033]0;owned\\007 done\\n'; "
                             "exit 2"})
    workdeck.cli("check")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        table = app.screen.query_one("#workers-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        reason = cell(table, "w-hostile", "reason")
        assert reason == "custom health check failed: [bold red]boom[/]  done"


async def test_a_lost_server_is_shown_then_recovered(workdeck):
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        workdeck.process.kill()
        await until(pilot, lambda: not app.connected)
        bar = app.screen.query_one("#connection")
        assert "lost" in shown(bar)
        # The console starts a new local server by itself and reconnects.
        await until(pilot, lambda: app.connected, timeout=30)
        assert "●" in shown(app.screen.query_one("#connection"))
    with workdeck.client() as client:
        client.post("/api/server/stop")


RUNBOOK = """
name = "Deploy"
description = "two steps and an approval"
[variables]
version = "1.2.3"
[[steps]]
name = "Build"
pool = "Web Pool"
script = "echo building $version; echo 'ERROR: flaky cache' >&2"
[[steps]]
name = "Approve"
manual = "Approve the release."
[[steps]]
name = "Ship"
pool = "Web Pool"
script = "for i in $(seq 1 200); do echo shipped line $i; done"
"""


def prepare_runbook(workdeck, ssh_servers, client_key, tmp_path):
    add(workdeck, "t-web-local-worker-01", ssh_servers(), client_key, "--trust-host-key",
        "--pool", "Web Pool")
    workdeck.cli("check")
    workdeck.cli("env", "add", "Test")
    workdeck.cli("env", "add", "Production")
    path = tmp_path / "deploy.toml"
    path.write_text(RUNBOOK)
    assert workdeck.cli("runbook", "import", str(path)).code == 0


async def test_launch_from_the_runbooks_view_and_approve_in_the_run_view(
        workdeck, ssh_servers, client_key, tmp_path):
    from console.screens.launch import LaunchDialog
    from console.screens.run import RunScreen
    from console.widgets.log_view import LogView

    prepare_runbook(workdeck, ssh_servers, client_key, tmp_path)
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("b")
        table = app.screen.query_one("#runbooks-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        dialog = app.screen
        await until(pilot, lambda: dialog.definition is not None)
        # No environment is preselected when there is a choice: launching says so.
        await pilot.press("ctrl+l")
        await pilot.pause(0.3)
        assert isinstance(app.screen, LaunchDialog)
        from textual.widgets import Select

        dialog.query_one("#launch-env", Select).value = "Production"
        await until(pilot, lambda: "t-web-local-worker-01" in shown(
            dialog.query_one("#launch-plan")))
        assert "1/1 healthy" in shown(dialog.query_one("#launch-plan"))
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        run_screen = app.screen
        await until(pilot, lambda: run_screen.run and run_screen.run["waiting"])
        log = run_screen.query_one("#run-log", LogView)
        await until(pilot, lambda: any(e["text"] == "building 1.2.3" for e in log.entries))
        assert "[a] approve" in shown(run_screen.query_one("#run-headline"))
        # An approval is confirmed, never one stray key: esc takes it back.
        from console.screens.modals import NoteDialog

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        assert "Approve step 2 of run" in shown(app.screen.query("Static").first())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is run_screen)
        await pilot.pause(0.3)
        assert run_screen.run["waiting"] is not None
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        await pilot.press(*"lgtm", "enter")
        await until(pilot, lambda: run_screen.run["status"] == "succeeded")
        # The decision is shown on the run: what, where and who.
        await until(pilot, lambda: "decided: approve step 2 by" in shown(
            run_screen.query_one("#run-headline")))
        assert "lgtm" in shown(run_screen.query_one("#run-headline"))
        # Nothing waits now: `a` opens neither a dialog nor the Advisor here.
        await pilot.press("a")
        await pilot.pause(0.3)
        assert app.screen is run_screen
        await until(pilot, lambda: any(e["text"] == "shipped line 200" for e in log.entries))
        # The view's tools: first error, search, timestamps, one step only.
        await pilot.press("e")
        await until(pilot, lambda: not log.following and log.marked is not None)
        await pilot.press("f")
        assert log.following
        await pilot.press("slash", *"line 150", "enter")
        await until(pilot, lambda: run_screen._match_seq is not None)
        await pilot.press("t")
        assert not log.timestamps
        steps = run_screen.query_one("#steps-table", LiveTable)
        steps.focus()
        await pilot.press("enter")
        assert log.only_step == 1
        await pilot.press("escape")
        assert not isinstance(app.screen, RunScreen)
    runs = workdeck.cli("runs", "list", "--json")
    import json

    [listed] = json.loads(runs.out)
    run = json.loads(workdeck.cli("runs", "show", str(listed["id"]), "--json").out)
    assert run["status"] == "succeeded" and run["environment"] == "Production"
    assert "approved by" in run["steps"][1]["reason"]


async def test_runs_view_lists_history_and_opens_a_finished_log(workdeck, ssh_servers,
                                                                client_key, tmp_path):
    from console.screens.run import RunScreen
    from console.widgets.log_view import LogView

    prepare_runbook(workdeck, ssh_servers, client_key, tmp_path)
    result = workdeck.cli("run", "Deploy", "--env", "Test")
    run_id = int(result.out.strip())
    # Cancelled once it waits at the approval, so the build's lines are in its log.
    eventually(lambda: "building" in workdeck.cli("runs", "log", str(run_id)).out,
               what="the build step's output")
    workdeck.cli("runs", "cancel", str(run_id))
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("u")
        table = app.screen.query_one("#runs-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        assert "cancelled" in cell(table, str(run_id), "status")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        log = app.screen.query_one("#run-log", LogView)
        await until(pilot, lambda: any("building" in e["text"] for e in log.entries))
        assert "log complete" in shown(app.screen.query_one("#log-status"))


async def new_runbook(app, pilot):
    """The runbook editor on a new runbook, opened as an operator would (b, then n)."""
    from console.screens.editor import RunbookEditor

    await pilot.press("b", "n")
    await until(pilot, lambda: isinstance(app.screen, RunbookEditor))
    return app.screen


async def test_write_a_runbook_in_the_editor_then_edit_it(workdeck, tmp_path):
    from textual.widgets import Input, TextArea

    from console.screens.editor import RunbookEditor
    from console.screens.modals import ConfirmDialog

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        editor = await new_runbook(app, pilot)
        editor.query_one("#edit-name", Input).value = "Flush caches"
        editor.query_one("#edit-description", Input).value = "clears the CDN"
        editor.query_one("#edit-variables", TextArea).text = (
            '[variables]\nregion = "eu"\n[variables.cdn_key]\nsensitive = true\n')
        editor.query_one("#step-name", Input).value = "Purge"
        editor.query_one("#step-script", TextArea).text = 'echo "purging $region"\n'
        await pilot.press("ctrl+n")
        editor.query_one("#step-name", Input).value = "Confirm"
        editor.query_one("#step-manual", Input).value = "Check the CDN dashboard."
        # A mistake is shown where it is, and nothing is saved.
        editor.query_one("#step-timeout", Input).value = "0"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert "timeout" in shown(editor.query_one("#editor-status"))
        editor.query_one("#step-timeout", Input).value = "600"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "saved" in shown(editor.query_one("#editor-status")))
        await pilot.press("escape")  # saved: it closes at once
        await until(pilot, lambda: not isinstance(app.screen, RunbookEditor))
    exported = workdeck.cli("runbook", "export", "Flush caches").out
    assert 'region = "eu"' in exported and "sensitive = true" in exported
    assert 'echo "purging $region"' in exported and "Check the CDN dashboard." in exported
    assert "timeout = 600" in exported

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("b")
        table = app.screen.query_one("#runbooks-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, RunbookEditor))
        editor = app.screen
        await until(pilot, lambda: editor.query_one("#edit-name", Input).value)
        editor.query_one("#step-script", TextArea).text = 'echo "purging $region now"\n'
        # Unsaved changes are not lost to a stray esc: it asks first.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await until(pilot, lambda: app.screen is editor)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "saved" in shown(editor.query_one("#editor-status")))
    assert "purging $region now" in workdeck.cli("runbook", "export", "Flush caches").out


async def test_the_editor_never_overwrites_another_runbook_and_d_removes_one(
        workdeck, tmp_path):
    from textual.widgets import Input

    from console.screens.editor import RunbookEditor
    from console.screens.modals import ConfirmDialog

    path = tmp_path / "two.toml"
    path.write_text('name = "Two steps"\n[variables]\nwho = "ops"\n[[steps]]\nname = "a"\n'
                    'script = "echo $who"\n[[steps]]\nname = "b"\nscript = "true"\n')
    assert workdeck.cli("runbook", "import", str(path)).code == 0
    original = workdeck.cli("runbook", "export", "Two steps").out
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        # A new runbook under a taken name is refused, the other one untouched.
        editor = await new_runbook(app, pilot)
        editor.query_one("#edit-name", Input).value = "Two steps"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "already exists" in shown(
            editor.query_one("#editor-status")))
        assert workdeck.cli("runbook", "export", "Two steps").out == original
        app.pop_screen()
        await pilot.pause(0.2)
        # Renaming one saves a copy: the old one stays.
        table = app.screen.query_one("#runbooks-table", LiveTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, RunbookEditor))
        editor = app.screen
        await until(pilot, lambda: editor.query_one("#edit-name", Input).value)
        editor.query_one("#edit-name", Input).value = "Two steps, renamed"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "saved" in shown(editor.query_one("#editor-status")))
        app.pop_screen()
        await until(pilot, lambda: table.row_count == 2)
        assert workdeck.cli("runbook", "export", "Two steps").out == original
        # d removes the selected one, after asking (n keeps it).
        table.focus()
        table.move_cursor(row=table.get_row_index("Two steps, renamed"))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await pilot.pause(0.2)
        assert table.row_count == 2
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == 1)
    listed = [b["name"] for b in json.loads(workdeck.cli("runbook", "list", "--json").out)]
    assert listed == ["Two steps"]
    assert workdeck.cli("runbook", "remove", "Two steps").code == 0
    gone = workdeck.cli("runbook", "remove", "Two steps")
    assert gone.code == 1 and "No runbook is named" in gone.err


async def test_the_editor_closes_with_esc_from_any_box_and_tab_moves_between_fields(
        workdeck):
    from textual.widgets import Input, TextArea

    from console.screens.editor import RunbookEditor
    from console.screens.modals import ConfirmDialog

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        editor = await new_runbook(app, pilot)
        script = editor.query_one("#step-script", TextArea)
        # Nothing changed: esc from the script box closes the editor at once.
        script.focus()
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RunbookEditor))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, RunbookEditor))
        editor = app.screen
        variables = editor.query_one("#edit-variables", TextArea)
        variables.focus()
        await pilot.press("tab")  # out of the box, not an indent
        await pilot.pause(0.1)
        assert app.focused is not variables and "\t" not in variables.text
        # With changes, esc from a text box asks first; the name is untouched.
        editor.query_one("#edit-name", Input).value = "Syntax"
        script = editor.query_one("#step-script", TextArea)
        script.text = "if true; then\n  echo yes\nfii\n"
        script.focus()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await until(pilot, lambda: app.screen is editor)
        assert editor.query_one("#edit-name", Input).value == "Syntax"
        # A script bash cannot parse is refused, saying where.
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "does not parse" in shown(
            editor.query_one("#editor-status")))
        assert "line" in shown(editor.query_one("#editor-status"))
    assert json.loads(workdeck.cli("runbook", "list", "--json").out) == []


async def test_the_launch_dialog_plans_as_values_are_typed(workdeck, ssh_servers,
                                                           client_key, tmp_path):
    from textual.widgets import Input, Select

    from console.screens.launch import LaunchDialog

    add(workdeck, "t-web-local-worker-01", ssh_servers(), client_key, "--trust-host-key",
        "--pool", "Web Pool")
    for env in ("Test", "Production"):
        workdeck.cli("env", "add", env)
    path = tmp_path / "secret.toml"
    path.write_text('name = "Secret"\n[variables]\nservice = "nginx"\n[variables.token]\n'
                    'sensitive = true\n[[steps]]\nname = "Use"\npool = "Web Pool"\n'
                    'script = "echo $service"\n')
    assert workdeck.cli("runbook", "import", str(path)).code == 0
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        app.push_screen(LaunchDialog("Secret"))
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog)
                    and app.screen.definition is not None)
        dialog = app.screen
        dialog.query_one("#launch-env", Select).value = "Production"
        plan = dialog.query_one("#launch-plan")
        await until(pilot, lambda: "still needed before launching: token" in shown(plan))
        assert "--var" not in shown(plan) and "t-web-local-worker-01" in shown(plan)
        # The first tab goes to the first variable, and typing adds to its value.
        dialog.query_one("#launch-env", Select).focus()
        await pilot.press("tab")
        assert app.focused is dialog.query_one("#var-service", Input)
        await pilot.press("end", *"-extra")
        assert dialog.query_one("#var-service", Input).value == "nginx-extra"
        await pilot.press("tab", *"s3cr3t-Value")
        await until(pilot, lambda: "still needed" not in shown(plan)
                    and "t-web-local-worker-01" in shown(plan))


async def test_tab_moves_between_the_panels_of_every_view(workdeck, ssh_servers, client_key):
    add(workdeck, "t-web-local-worker-01", ssh_servers(), client_key, "--trust-host-key",
        "--pool", "Web Pool")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        for key in ("h", "p", "w", "b", "u", "a"):
            await pilot.press(key)
            await pilot.pause(0.3)
            before = app.focused
            focusable = [w for w in app.screen.focus_chain]
            await pilot.press("tab")
            await pilot.pause(0.1)
            if len(focusable) > 1:
                assert app.focused is not before, (key, before, focusable)


async def test_view_keys_always_reach_their_list_even_from_a_run(workdeck):
    from console.screens.run import RunScreen
    from console.screens.runbooks import RunbooksScreen
    from console.screens.runs import RunsScreen

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen))
        app.push_screen(RunScreen(9999))  # a run launched from Runbooks opens here
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen))
        app.push_screen(RunScreen(9999))
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("b")  # the Runbooks list, not the run left open there
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen))


async def test_help_lists_each_key_once_as_it_really_works_and_ctrl_c_quits(workdeck):
    from textual.widgets import Input

    from console.screens.editor import RunbookEditor
    from console.screens.modals import ConfirmDialog, help_rows
    from console.screens.run import RunScreen

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        seen_views = {}
        for key in ("h", "w", "p", "b", "u", "a"):
            await pilot.press(key)
            await pilot.pause(0.2)
            rows = help_rows(app.screen)
            keys = [k for row in rows for k in row[0].split(", ")]
            assert len(keys) == len(set(keys)), (key, rows)  # no key listed twice
            assert all("_" not in description for _k, description, _e in rows), rows
            seen_views[app.screen.VIEW_NAME] = {k: d for k, d, _e in rows}
        assert "/" not in seen_views["Dashboard"]  # no filter there
        # Every key on offer names an action that exists where it runs (a binding to a
        # missing action does nothing at all: tab on the Dashboard once did).
        for key in ("h", "w", "p", "b", "u", "a"):
            await pilot.press(key)
            await pilot.pause(0.1)
            for active in app.screen.active_bindings.values():
                action = active.binding.action
                owner, _, name = action.rpartition(".")
                target = {"app": app, "screen": app.screen}.get(owner, active.node)
                name = name.split("(")[0]
                assert hasattr(target, f"action_{name}"), (key, action, active.node)
        assert seen_views["Workers"]["/"] == "Filter"
        app.push_screen(RunScreen(9999))
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.pause(0.2)
        run_keys = {k: d for k, d, _e in help_rows(app.screen)}
        assert run_keys["w"] == "Wrap" and run_keys["/"] == "Search"
        assert "Advisor" not in run_keys.values()
        # What help says is what the key does: w wraps here, it does not open Workers.
        await pilot.press("w")
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunScreen) and app.screen.log_view.wrap
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        # ctrl+c quits, after asking when the editor holds unsaved changes.
        (await new_runbook(app, pilot)).query_one("#edit-name", Input).value = "Unsaved"
        await pilot.press("ctrl+c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, RunbookEditor))
        await pilot.press("ctrl+c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running)


async def test_the_palette_offers_the_view_s_own_verbs(workdeck):
    from console.screens.editor import RunbookEditor

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        await pilot.pause(0.2)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for verb in ("Workers: Check", "Workers: Drain/undrain", "Workers: Trust key",
                     "Workers: Disable/enable"):
            assert verb in titles, titles
        await pilot.press("b")
        await pilot.pause(0.2)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Runbooks: Run" in commands and "Runbooks: Remove" in commands
        commands["Runbooks: New runbook"].callback()
        await until(pilot, lambda: isinstance(app.screen, RunbookEditor))
