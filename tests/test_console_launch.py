"""The launch finder: a runbook launched on Production with its defaults in six keys from
the Dashboard, counted; the next launch starts on the environment last used; `:run` with
part of a name; a value missing is asked for, not launched without."""

from __future__ import annotations

from test_console import SIZE, until
from test_runs import import_runbook, setup_fleet, wait_run

from console.app import WorkdeckApp
from console.widgets.live_table import LiveTable

BOOKS = """
name = "Migrate database"
[variables]
target = "latest"
[[steps]]
name = "Migrate"
pool = "Web Pool"
script = "echo migrating to $target"
"""
OTHER = """
name = "Deploy"
[variables.version]
description = "what to deploy"
[[steps]]
name = "Ship"
pool = "Web Pool"
script = "echo shipping $version"
"""


async def test_a_runbook_on_production_with_its_defaults_in_six_keys(
        workdeck, ssh_servers, client_key, tmp_path):
    from console.screens.finder import RunbookFinder
    from console.screens.launch import LaunchDialog
    from console.screens.modals import ConfirmDialog
    from console.screens.run import RunScreen

    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, BOOKS)
    import_runbook(workdeck, tmp_path, OTHER, name="other.toml")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded and len(app.fleet.runbooks) == 2)
        assert app.screen.VIEW_NAME == "Dashboard"
        keys = ["l", "m", "enter", "p", "enter", "y"]
        for key in keys:
            await pilot.press(key)
            # Each key acts on what it opened: wait for it, as a person would look.
            if key == "l":
                await until(pilot, lambda: isinstance(app.screen, RunbookFinder))
            elif key == "m":
                await until(pilot, lambda: app.screen.listed.highlighted == 0)
            elif key == "enter":
                await until(pilot, lambda: isinstance(app.screen, LaunchDialog | ConfirmDialog)
                            and getattr(app.screen, "definition", True) is not None)
        assert len(keys) == 6
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        first = wait_run(workdeck, app.screen.run_id, lambda r: r["finished_at"])
        assert (first["runbook"], first["environment"], first["status"]) == (
            "Migrate database", "Production", "succeeded")
        assert first["variables"] == {"target": "latest"}

        # The next one starts where the last went: five keys.
        await pilot.press("escape", "l", "m", "enter")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog)
                    and app.screen.definition is not None)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")  # taken back: nothing launched
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        await pilot.press("t", "enter")  # Test: no confirmation asked
        await until(pilot, lambda: isinstance(app.screen, RunScreen)
                    and app.screen.run_id != first["id"])
        second = wait_run(workdeck, app.screen.run_id, lambda r: r["finished_at"])
        assert second["environment"] == "Test"

        # `:run` with part of a name; a value without a default is asked for.
        await pilot.press("escape", "colon", *"run dep", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunbookFinder))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog)
                    and app.screen.runbook == "Deploy" and app.screen.definition is not None)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.focused is not None
                    and app.screen.focused.id == "var-version")
        await pilot.press(*"1.2", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen)
                    and app.screen.run_id not in (first["id"], second["id"]))
        third = wait_run(workdeck, app.screen.run_id, lambda r: r["finished_at"])
        assert (third["runbook"], third["environment"], third["variables"]) == (
            "Deploy", "Test", {"version": "1.2"})
        await pilot.press("escape", "u")  # the Runs view lists all three
        table = app.screen.query_one("#runs-table", LiveTable)
        await until(pilot, lambda: table.row_count == 3)


async def test_keys_typed_in_one_burst_after_colon_or_l_land_in_the_prompt():
    """Typed fast (or pasted), `:approvals` and `lmig` are a command and a search: no
    letter reaches the view underneath (`a` would open the Advisor) or is lost."""
    from fixed_fleet import FixedFleetApp
    from textual import events
    from textual.widgets import Input

    from console.screens.finder import RunbookFinder
    from console.screens.modals import CommandLine

    for burst, screen, field in ((":approvals", CommandLine, "#command-input"),
                                 ("lmig", RunbookFinder, "#finder-query")):
        app = FixedFleetApp()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            # Queued at once, as a terminal delivers a burst: none waits for the last.
            for char in burst:
                app.post_message(events.Key("colon" if char == ":" else char, char))
            await until(pilot, lambda: isinstance(app.screen, screen))  # noqa: B023
            await pilot.pause(0.2)
            assert app.screen.query_one(field, Input).value == burst[1:]
            assert app.screen_stack[-2].VIEW_NAME == "Dashboard"
