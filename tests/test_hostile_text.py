"""Text from outside is inert everywhere: names with control, format or bidi characters
are refused with a sentence; free text is cleaned where it enters; markup in names is
shown as typed; and text an older Workdeck stored unclean reaches no terminal raw, from
any view of the console or any command."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_runs import import_runbook, setup_fleet, wait_run

from console.app import WorkdeckApp
from console.widgets.live_table import LiveTable

ESCAPES = {
    "CSI": "\x1b[2J\x1b[31m",
    "OSC 52": "\x1b]52;c;aGVsbG8=\x07",
    "DCS": "\x1bPq#0;2;0;0;0\x1b\\",
    "C1": "\x9b31m\x85\x90",
    "bidi": "\u202eevil\u202c",
    "zero-width": "a\u200bb\ufeff",
}
FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) not in "\n"} | \
    {chr(c) for c in range(0x7f, 0xa0)} | set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067"
                                              "\u2068\u2069\u200b\ufeff")
MARKUP = {"environment": "[/]", "environment2": "[@click=app.quit]Prod[/]",
          "pool": "[b]Edge[/b] Worker Pool", "runbook": "[/] Deploy [reverse]",
          "step": "[@click=app.bell]Step[/]"}


def inert(text: str) -> bool:
    return not (set(text) & FORBIDDEN)


def rendered(app) -> str:
    """What the screen draws, segment by segment, as text."""
    update = app.screen._compositor.render_full_update()
    return "\n".join("".join(segment.text for strip in line for segment in strip)
                     for line in update.strips)


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_names_refuse_invisible_characters(workdeck, tmp_path, escape):
    bad = f"t-x{ESCAPES[escape]}-worker-01"
    results = [
        workdeck.cli("worker", "add", bad, "--host", "127.0.0.1", "--port", "1"),
        workdeck.cli("pool", "add", f"Evil {ESCAPES[escape]} Pool"),
        workdeck.cli("env", "add", f"Prod{ESCAPES[escape]}"),
    ]
    path = tmp_path / "evil.toml"
    for name, step in ((f"Deploy{ESCAPES[escape]}", "Step"), ("Deploy", f"Step{ESCAPES[escape]}")):
        path.write_text(f"name = {json.dumps(name)}\n[[steps]]\nname = {json.dumps(step)}\n"
                        "script = 'true'\n")
        results.append(workdeck.cli("runbook", "import", str(path)))
    for result in results:
        assert result.code == 1, result
        assert result.err.count("\n") == 1 and "Traceback" not in result.err
        assert inert(result.err), repr(result.err)
    with workdeck.client() as client:
        assert not client.get("/api/environments")
        assert not client.get("/api/runbooks")


def test_free_text_is_cleaned_where_it_enters(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    hostile = "".join(ESCAPES.values())
    workdeck.cli("pool", "describe", "Web Pool", f"serves {hostile} the web")
    import_runbook(workdeck, tmp_path, f"""
name = "Approve"
description = {json.dumps("deploys " + hostile)}
[[steps]]
name = "Approve"
manual = {json.dumps("check the graphs " + hostile)}
""")
    with workdeck.client() as client:
        run = client.post("/api/runs", {"runbook": "Approve", "environment": "Test"})
        wait_run(workdeck, run["id"], lambda r: r["waiting"])
        with workdeck.target.sync_client() as http:  # httpx: a header no client would send
            http.post(f"/api/runs/{run['id']}/decide",
                      json={"action": "approve", "note": "ok " + hostile},
                      headers={"X-Workdeck-Actor": ("mallory" + hostile).encode()})
        done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
        stored = [client.get("/api/pools/Web Pool")["description"],
                  client.get("/api/runbooks/Approve")["description"],
                  client.get("/api/runbooks/Approve")["steps"][0]["manual"],
                  done["steps"][0]["reason"], *map(json.dumps, client.get("/api/audit"))]
    for text in stored:
        assert inert(json.loads(text) if text.startswith("{") else text), repr(text)
    assert "serves" in stored[0] and "the web" in stored[0]
    # Who decided is who the server knows, never what a header says.
    import getpass

    assert "mallory" not in done["steps"][0]["reason"]
    assert f"approved by {getpass.getuser()} (socket)" in done["steps"][0]["reason"]


def dirty_the_store(workdeck):
    """What an older Workdeck may have stored: text from outside, not cleaned."""
    hostile = "".join(ESCAPES.values())
    with sqlite3.connect(workdeck.data_dir.database) as conn:
        conn.execute("UPDATE pool SET description = ?", (f"old {hostile} pool",))
        conn.execute("UPDATE worker SET reason = ?", (f"old {hostile} reason",))
        conn.execute("UPDATE run SET reason = ?, actor = ?", (f"old {hostile} run",
                                                             f"old {hostile} actor"))
        conn.execute("UPDATE run_step SET reason = ?", (f"old {hostile} step",))
        conn.execute("UPDATE audit_event SET detail = ?", (f"old {hostile} audit",))


def test_every_command_prints_stored_text_inert(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Echo"
[[steps]]
name = "Echo"
pool = "Web Pool"
script = "echo hi"
""")
    assert workdeck.cli("run", "Echo", "--env", "Test", "--follow").code == 0
    # The server reads the store again (not its memory) after a restart.
    dirty_the_store(workdeck)
    workdeck.process.terminate()
    workdeck.process.wait(10)
    from conftest import start_workdeck

    _data, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home)
    commands = [["worker", "list"], ["worker", "show", "t-web-local-worker-01"],
                ["pool", "list"], ["pool", "show", "Web Pool"], ["runs", "list"],
                ["runs", "show", "1"], ["runs", "log", "1"], ["audit"], ["env", "list"],
                ["runbook", "list"], ["advise"], ["server", "status"], ["settings"],
                ["policy"]]
    for command in commands:
        for json_flag in ([], ["--json"]):
            if json_flag and command[0] in ("server", "runs") and command[1:2] == ["log"]:
                continue
            result = workdeck.cli(*command, *json_flag)
            assert inert(result.out) and inert(result.err), (command, result)
    assert "old" in workdeck.cli("pool", "list").out


async def test_every_view_shows_markup_as_typed_and_stored_text_inert(workdeck, ssh_servers,
                                                                     client_key, tmp_path):
    server = ssh_servers()
    pool = MARKUP["pool"]
    assert workdeck.cli("worker", "add", "t-web-local-worker-01", "--host", server.host,
                        "--port", str(server.port), "--key-path", str(client_key), "--pool", pool,
                        "--trust-host-key").code == 0
    assert workdeck.cli("check").code == 0
    for env in (MARKUP["environment"], MARKUP["environment2"]):
        assert workdeck.cli("env", "add", env).code == 0, env
    import_runbook(workdeck, tmp_path, f"""
name = {json.dumps(MARKUP["runbook"])}
[[steps]]
name = {json.dumps(MARKUP["step"])}
pool = {json.dumps(pool)}
script = "echo done"
""")
    with workdeck.client() as client:
        run = client.post("/api/runs", {"runbook": MARKUP["runbook"],
                                        "environment": MARKUP["environment2"]})
    wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    dirty_the_store(workdeck)
    workdeck.process.terminate()
    workdeck.process.wait(10)
    from conftest import start_workdeck

    _data, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home)
    app = WorkdeckApp(workdeck.target)
    seen: dict[str, str] = {}
    async with app.run_test(size=(160, 45)) as pilot:
        async def settle():
            for _ in range(100):
                await pilot.pause(0.05)
                if app.fleet_loaded and not app.changes_pending:
                    break
            await pilot.pause(0.2)

        await settle()
        seen["dashboard"] = rendered(app)
        for key, view in (("w", "workers"), ("p", "pools"), ("b", "runbooks"), ("u", "runs"),
                          ("a", "advisor")):
            await pilot.press(key)
            await settle()
            seen[view] = rendered(app)
        await pilot.press("p")
        await settle()
        app.screen.select_pool(pool)
        await settle()
        seen["pool opened"] = rendered(app)
        await pilot.press("b")
        await settle()
        app.screen.query_one("#runbooks-table", LiveTable).focus()
        await pilot.press("r")  # the launch dialog, and its list of environments opened
        await settle()
        select = app.screen.query_one("#launch-env")
        select.focus()
        await pilot.press("enter")
        await settle()
        seen["launch dialog"] = rendered(app)
        await pilot.press("escape", "escape")
        await settle()
        await pilot.press("e")  # the editor
        await settle()
        seen["editor"] = rendered(app)
        await pilot.press("escape")
        await settle()
        from console.screens.run import RunScreen

        await app.push_screen(RunScreen(run["id"]))
        await settle()
        seen["run"] = rendered(app)
        assert app.is_running  # no [@click=app.quit] took effect
    for view, text in seen.items():
        assert inert(text), (view, [c for c in text if c in FORBIDDEN])
    assert "old" in seen["pool opened"] and pool in seen["pool opened"]
    assert MARKUP["environment2"] in seen["launch dialog"]
    assert MARKUP["environment"] in seen["launch dialog"]
    assert MARKUP["runbook"] in seen["runbooks"]
    assert MARKUP["step"] in seen["run"]
