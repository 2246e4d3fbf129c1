"""The console knows who it is for (Textual run_test, each app with a person's token on one
real server): the top bar names them, keys they may not use are not offered, runs waiting
for their approval are counted and listed in the Approvals view, and an admin manages
people in the People view."""

from __future__ import annotations

from test_console import SIZE, shown, until
from test_four_eyes import Team, launched
from test_four_eyes import team as team

from console.app import WorkdeckApp
from console.client import Target
from console.profiles import Profile
from console.screens.modals import ConfirmDialog, HelpScreen, NoteDialog, help_rows
from console.widgets.live_table import LiveTable


def console_of(team: Team, person: str | None) -> WorkdeckApp:
    """The console as `person` (their token over HTTP), or as the server's own account
    (over the socket) when None."""
    target = Target(team.data_dir)
    if person is not None:
        target.server_url = team.url
        target.profile = Profile(person, team.url, team.tokens[person], None)
    return WorkdeckApp(target)


async def people_table(pilot, app: WorkdeckApp) -> LiveTable:
    """The People view, opened with `:people` once the console has the fleet."""
    await until(pilot, lambda: app.fleet_loaded)
    await pilot.press("colon", *"people", "enter")
    await until(pilot, lambda: app.screen.VIEW_NAME == "People")
    return app.screen.query_one("#people-table", LiveTable)


async def select_runbook(pilot, app: WorkdeckApp, name: str) -> None:
    """The Runbooks view, with the runbook `name` selected."""
    await until(pilot, lambda: app.fleet_loaded)
    await pilot.press("b")
    table = app.screen.query_one("#runbooks-table", LiveTable)
    await until(pilot, lambda: name in table.row_keys())
    table.move_cursor(row=table.row_keys().index(name))


def footer_keys(app: WorkdeckApp) -> set[str]:
    # As the app itself would judge them: with two apps in one test, a screen's `app` is
    # whichever is active in the caller's context.
    with app._context():
        return {active.binding.description for active in app.screen.active_bindings.values()
                if active.binding.show and active.enabled}


async def test_the_top_bar_names_the_person_and_their_roles(team, monkeypatch):
    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    app = console_of(team, "otto")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        bar = shown(app.screen.query_one("#connection"))
        host = app.fleet.server.host
        assert f"otto@{host} (operator)" in bar
    app = console_of(team, None)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        assert "(admin)" in shown(app.screen.query_one("#connection"))


async def test_keys_a_person_may_not_use_are_not_offered(team, monkeypatch):
    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    team.admin("user", "add", "vera")
    team.admin("user", "grant", "vera", "viewer")
    team.tokens["vera"] = team.admin("token", "create", "--user", "vera")[1].split()[0]
    verbs = {"Check", "Trust key", "Drain/undrain", "Disable/enable", "Check all"}
    app = console_of(team, "adam")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        await until(pilot, lambda: app.screen.VIEW_NAME == "Workers")
        assert verbs <= footer_keys(app)  # an admin is offered all of them
    app = console_of(team, "vera")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("w")
        await until(pilot, lambda: app.screen.VIEW_NAME == "Workers")
        keys = footer_keys(app)
        assert "Filter" in keys and not keys & verbs, keys
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        described = {row[1] for row in help_rows(app.screen.under)}
        assert "Check" not in described and "Trust key" not in described
        await pilot.press("escape")
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Check every worker now" not in commands
        assert not any("Trust key" in title for title in commands)
        await pilot.press("b")
        await until(pilot, lambda: app.screen.VIEW_NAME == "Runbooks")
        assert not footer_keys(app) & {"Run", "Edit", "New runbook", "Remove"}

        # Granted operator, the console follows at once: no reconnect, no restart.
        team.admin("user", "grant", "vera", "operator")
        await until(pilot, lambda: "Run" in footer_keys(app))
        assert "Edit" not in footer_keys(app)
        assert "operator" in shown(app.screen.query_one("#connection"))


async def test_two_people_four_eyes_in_the_console(team, monkeypatch):
    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    held = launched(team, "adam", "Deploy", "Production")
    refused = launched(team, "otto", "Deploy", "Production")
    adam, ada = console_of(team, "adam"), console_of(team, "ada")
    async with adam.run_test(size=SIZE) as adam_pilot, \
            ada.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ada.fleet_loaded and len(
            ada.fleet.awaiting_approval()) == 2)
        assert "2 to approve" in shown(ada.screen.query_one("#connection"))
        # adam may approve, but not his own launch: one for him.
        await until(adam_pilot, lambda: adam.fleet_loaded)
        assert [r.id for r in adam.fleet.awaiting_approval()] == [int(refused)]
        await adam_pilot.press("colon", *"run " + held, "enter")
        await until(adam_pilot, lambda: adam.screen.VIEW_NAME == "Run" and
                    adam.screen.shown is not None)
        headline = shown(adam.screen.query_one("#run-headline"))
        assert "[a] approve" not in headline and "another person than adam" in headline
        assert "Approve" not in footer_keys(adam)

        await pilot.press("colon", *"approvals", "enter")
        await until(pilot, lambda: ada.screen.VIEW_NAME == "Approvals")
        table = ada.screen.query_one("#approvals-table", LiveTable)
        await until(pilot, lambda: table.row_keys() == [held, refused])
        assert table.get_cell(held, "at").plain == "start"
        await pilot.press("a")
        await until(pilot, lambda: isinstance(ada.screen, NoteDialog))
        assert f"Approve the start of run {held} (Deploy on Production)?" in shown(
            ada.screen.query("Static").first())
        await pilot.press(*"change 42", "enter")
        # It starts, and comes back at its manual step, which needs another person too.
        await until(pilot, lambda: held in table.row_keys() and
                    table.get_cell(held, "at").plain == "step 2", timeout=30)
        assert team.run(held)["decisions"][0]["note"] == "change 42"
        table.move_cursor(row=table.row_keys().index(refused))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(ada.screen, NoteDialog))
        await pilot.press(*"not today", "enter")
        run = team.until(refused, lambda r: r["finished_at"])
        assert run["status"] == "cancelled" and run["reason"].endswith(": not today")
        # adam sees who approved his start, and when, in the Run view.
        await until(adam_pilot, lambda: "approve the start by ada" in shown(
            adam.screen.query_one("#run-headline")))
        assert "change 42" in shown(adam.screen.query_one("#run-headline"))


async def test_an_admin_grants_revokes_and_removes_in_the_people_view(team, monkeypatch):
    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    app = console_of(team, "adam")
    async with app.run_test(size=SIZE) as pilot:
        table = await people_table(pilot, app)
        await until(pilot, lambda: {"otto", "ada", "amy", "adam"} <= set(table.row_keys()))
        table.move_cursor(row=table.row_keys().index("otto"))
        await until(pilot, lambda: "Tokens of otto: 1" in shown(
            app.screen.query_one("#tokens-title")))
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        await pilot.press(*"approver on Production", "enter")
        await until(pilot, lambda: "approver on Production" in table.get_cell(
            "otto", "roles").plain)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        await pilot.press(*"operator", "enter")
        await until(pilot, lambda: table.get_cell("otto", "roles").plain
                    == "approver on Production")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: "otto" not in table.row_keys())
    audit = team.admin("audit")[1]
    assert "person.grant" in audit and "person.revoke" in audit and "person.remove" in audit
    # Someone who is not an admin sees the people, and no verbs on them.
    app = console_of(team, "ada")
    async with app.run_test(size=SIZE) as pilot:
        table = await people_table(pilot, app)
        await until(pilot, lambda: "ada" in table.row_keys())
        assert not footer_keys(app) & {"Grant", "Revoke", "Remove"}


async def test_the_editor_keeps_who_approves_a_manual_step(team, monkeypatch):
    from textual.widgets import Select

    from console.screens.editor import RunbookEditor

    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    app = console_of(team, "adam")
    async with app.run_test(size=SIZE) as pilot:
        await select_runbook(pilot, app, "Gate")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, RunbookEditor) and app.screen.steps)
        editor = app.screen
        await until(pilot, lambda: editor._saved_state)  # loaded: what "unsaved" compares
        assert not editor.unsaved  # opened as it is: nothing to lose
        assert editor.query_one("#step-approval", Select).value == "another person"
        # Saved as it is, the field stays; set to anyone, it goes.
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not editor.unsaved)
        assert 'approval = "another person"' in team.admin("runbook", "export", "Gate")[1]
        editor.query_one("#step-approval", Select).value = "anyone"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "approval" not in team.admin(
            "runbook", "export", "Gate")[1])


async def test_the_launch_dialog_offers_where_one_may_launch_and_says_four_eyes(
        team, monkeypatch):
    from textual.widgets import Select

    from console.screens.launch import LaunchDialog

    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    team.admin("user", "add", "dev")
    team.admin("user", "grant", "dev", "operator", "--env", "Development")
    team.tokens["dev"] = team.admin("token", "create", "--user", "dev")[1].split()[0]
    for person, offered in (("otto", ["Development", "Production"]), ("dev", ["Development"])):
        app = console_of(team, person)
        async with app.run_test(size=SIZE) as pilot:
            await select_runbook(pilot, app, "Deploy")
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, LaunchDialog))  # noqa: B023
            select = app.screen.query_one("#launch-env", Select)
            options = [(str(prompt), value) for prompt, value in select._options
                       if value is not Select.NULL]
            assert [value for _prompt, value in options] == offered
            if "Production" in offered:
                assert "four eyes" in dict((v, p) for p, v in options)["Production"]


async def nodes_table(pilot, app: WorkdeckApp) -> tuple[LiveTable, str]:
    """The Nodes view, opened with `:nodes`, once it shows the one node: (table, name)."""
    await until(pilot, lambda: app.fleet_loaded)
    await pilot.press("colon", *"nodes", "enter")
    await until(pilot, lambda: app.screen.VIEW_NAME == "Nodes")
    table = app.screen.query_one("#nodes-table", LiveTable)
    await until(pilot, lambda: len(table.row_keys()) == 1)
    return table, table.row_keys()[0]


async def test_the_nodes_view_shows_this_server_and_an_admin_drains_it(team, monkeypatch):
    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    operator = console_of(team, "otto")
    async with operator.run_test(size=SIZE) as pilot:
        table, name = await nodes_table(pilot, operator)
        assert table.get_cell(name, "state").plain == "up"
        assert "(this)" in table.get_cell(name, "name").plain
        assert "Drain/undrain" not in footer_keys(operator)  # sees them, drains none
    admin = console_of(team, "adam")
    async with admin.run_test(size=SIZE) as pilot:
        table, name = await nodes_table(pilot, admin)
        assert "Drain/undrain" in footer_keys(admin)
        await pilot.press("d")
        await until(pilot, lambda: table.get_cell(name, "state").plain == "up, draining")
        await pilot.press("d")
        await until(pilot, lambda: table.get_cell(name, "state").plain == "up")
    assert "node.drain" in team.admin("audit")[1]
