"""Make the README's screenshots from the real console on the demo fleet.

Run: .venv/bin/python scripts/screenshots.py   (writes SVG files into screenshots/)
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console.app import WorkdeckApp  # noqa: E402
from console.client import Client, Target, start_server  # noqa: E402
from console.demo import DEMO_ARGS, stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

SIZE = (150, 40)
POOL = "Local Development Web Worker Pool"
BUILD_POOL = "Local Build Worker Pool"
OUT = ROOT / "screenshots"


def wait_until_checked(target: Target, timeout: float = 30) -> None:
    """Every enabled demo worker has a first result, so the pictures show a settled fleet."""
    deadline = time.monotonic() + timeout
    with Client(target) as client:
        while time.monotonic() < deadline:
            workers = client.get("/api/workers")
            if len(workers) > 1 and all(w["checked_at"] or not w["enabled"] for w in workers):
                return
            time.sleep(0.2)
    raise SystemExit("the demo fleet was not checked in time")


async def shoot(target: Target) -> None:
    app = WorkdeckApp(target)
    async with app.run_test(size=SIZE) as pilot:
        while not app.fleet_loaded:
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.save_screenshot("dashboard.svg", str(OUT))
        await pilot.press("w")
        await pilot.pause(0.3)
        app.save_screenshot("workers.svg", str(OUT))
        table = app.screen.query_one("#workers-table")
        table.focus()
        table.move_cursor(row=table.get_row_index("t-k8s-local-worker-01"))
        await pilot.press("t")
        await pilot.pause(0.3)
        app.save_screenshot("trust-host-key.svg", str(OUT))
        await pilot.press("escape")
        table.move_cursor(row=table.get_row_index("p-web-local-worker-01"))
        await pilot.press("enter")
        await pilot.pause(0.8)
        app.save_screenshot("worker-details.svg", str(OUT))
        await pilot.press("escape")
        await shoot_runs(app, pilot)
        await shoot_pools(app, pilot, target)
        await shoot_dynamic(app, pilot, target)


def launch_warm_caches(target: Target, count: int) -> list[int]:
    with Client(target) as client:
        return [client.post("/api/runs", {"runbook": "Warm caches",
                                          "environment": "Development"})["id"]
                for _ in range(count)]


async def shoot_pools(app: WorkdeckApp, pilot, target: Target) -> None:  # type: ignore[no-untyped-def]
    """A busy pool: every slot leased, two steps queued, on the Dashboard and opened."""
    runs = await asyncio.to_thread(launch_warm_caches, target, 10)
    await pilot.press("h")
    await pilot.pause(6)  # a few samples for the sparklines
    app.save_screenshot("dashboard.svg", str(OUT))
    await pilot.press("p")
    screen = app.screen
    await until(pilot, lambda: screen.pools_table.has_row(POOL))
    screen.select_pool(POOL)
    await until(pilot, lambda: screen.query_one("#queue-table").row_count == 2)
    await pilot.pause(0.5)
    app.save_screenshot("pools.svg", str(OUT))
    await pilot.press("a")
    await until(pilot, lambda: app.screen.table.row_count > 0)
    await pilot.pause(0.3)
    app.save_screenshot("advisor.svg", str(OUT))
    with Client(target) as client:
        for run_id in runs:
            client.post(f"/api/runs/{run_id}/cancel")


async def shoot_dynamic(app: WorkdeckApp, pilot, target: Target) -> None:  # type: ignore[no-untyped-def]
    """The build pool with no worker of its own: three builds wait, and it makes two."""
    def launch_builds() -> list[int]:
        with Client(target) as client:
            return [client.post("/api/runs", {"runbook": "Build release",
                                              "environment": "Development"})["id"]
                    for _ in range(3)]

    runs = await asyncio.to_thread(launch_builds)
    await pilot.press("p")
    screen = app.screen
    await until(pilot, lambda: screen.pools_table.has_row(BUILD_POOL))
    screen.select_pool(BUILD_POOL)
    await until(pilot, lambda: screen.query_one("#leases-table").row_count == 3, timeout=40)
    await pilot.pause(2)
    app.save_screenshot("dynamic-workers.svg", str(OUT))
    with Client(target) as client:
        for run_id in runs:
            client.post(f"/api/runs/{run_id}/cancel")


async def until(pilot, predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            # Which screen it is stuck on says why (a dialog asking, say).
            screen = pilot.app.screen
            raise SystemExit(f"the console did not get there in time: {screen!r} "
                             f"{getattr(screen, 'title_text', '')}")
        await pilot.pause(0.05)


async def shoot_runs(app: WorkdeckApp, pilot) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import Input, Select

    from console.screens.launch import LaunchDialog
    from console.screens.run import RunScreen

    await pilot.press("b")
    table = app.screen.query_one("#runbooks-table")
    await until(pilot, lambda: table.row_count >= 4)
    table.move_cursor(row=table.get_row_index("Restart web tier"))
    await pilot.pause(0.5)
    app.save_screenshot("runbooks.svg", str(OUT))
    from textual.widgets import Input as TextInput

    from console.screens.editor import RunbookEditor

    table.focus()
    await pilot.press("e")
    await until(pilot, lambda: isinstance(app.screen, RunbookEditor)
                and app.screen.query_one("#edit-name", TextInput).value)
    app.screen.query_one("#edit-steps").index = 2
    await pilot.pause(0.5)
    app.save_screenshot("runbook-editor.svg", str(OUT))
    await pilot.press("escape")
    await pilot.pause(0.2)
    await pilot.press("r")
    await until(pilot, lambda: isinstance(app.screen, LaunchDialog)
                and app.screen.definition is not None)
    dialog = app.screen
    dialog.query_one("#launch-env", Select).value = "Production"
    dialog.query_one("#var-api_token", Input).value = "lb-token-8f2a91"
    await pilot.pause(1.5)  # the plan for Production comes back from the server
    app.save_screenshot("launch-dialog.svg", str(OUT))
    await pilot.press("ctrl+l")
    await until(pilot, lambda: isinstance(app.screen, RunScreen))
    run_screen = app.screen
    await until(pilot, lambda: run_screen.run and run_screen.run["waiting"])
    await pilot.pause(0.8)
    app.save_screenshot("run-manual-step.svg", str(OUT))
    run_id = run_screen.run_id
    # The same question in the Approvals view, answered there with a note.
    await pilot.press("colon", *"approvals", "enter")
    approvals = app.screen.query_one("#approvals-table")
    await until(pilot, lambda: approvals.row_count >= 1)
    await pilot.pause(0.5)
    app.save_screenshot("approvals.svg", str(OUT))
    await pilot.press("a")
    await pilot.pause(0.3)
    await pilot.press(*"drained, LB green", "enter")  # the approval's note
    await pilot.press("colon", *f"run {run_id}", "enter")
    await until(pilot, lambda: isinstance(app.screen, RunScreen))
    run_screen = app.screen
    await until(pilot, lambda: run_screen.run and run_screen.run["finished_at"] is not None)
    # The finished run: the decision on it, and the worker its "all" step left out.
    await until(pilot, lambda: run_screen.run.get("decisions"))
    await pilot.pause(0.8)
    app.save_screenshot("run-finished.svg", str(OUT))
    await pilot.press("escape", "b")
    table = app.screen.query_one("#runbooks-table")
    table.move_cursor(row=table.get_row_index("Migrate database"))
    await pilot.press("r")
    await until(pilot, lambda: isinstance(app.screen, LaunchDialog)
                and app.screen.definition is not None)
    app.screen.query_one("#launch-env", Select).value = "Production"
    await pilot.pause(0.5)
    await pilot.press("ctrl+l")
    await until(pilot, lambda: isinstance(app.screen, RunScreen))
    run_screen = app.screen
    await until(pilot, lambda: run_screen.run and run_screen.run["waiting"])
    await pilot.pause(0.8)
    app.save_screenshot("run-guided-failure.svg", str(OUT))
    await pilot.press("s")
    await until(pilot, lambda: run_screen.run["finished_at"] is not None)
    await pilot.press("escape", "u")
    await pilot.pause(0.5)
    app.save_screenshot("runs.svg", str(OUT))
    await pilot.press("colon", *"people", "enter")
    people = app.screen.query_one("#people-table")
    await until(pilot, lambda: people.row_count >= 3)
    people.move_cursor(row=people.get_row_index("alice"))
    await pilot.pause(0.5)
    app.save_screenshot("people.svg", str(OUT))
    await pilot.press("colon", *"nodes", "enter")
    nodes = app.screen.query_one("#nodes-table")
    await until(pilot, lambda: nodes.row_count >= 1)
    await pilot.pause(0.5)
    app.save_screenshot("nodes.svg", str(OUT))
    await pilot.press("colon", *"schedules", "enter")
    timed = app.screen.query_one("#schedules-table")
    await until(pilot, lambda: timed.row_count >= 2)
    await pilot.pause(0.5)
    app.save_screenshot("schedules.svg", str(OUT))
    from console.screens.finder import RunbookFinder

    await pilot.press("l", *"mig")
    await until(pilot, lambda: isinstance(app.screen, RunbookFinder))
    await pilot.pause(0.3)
    app.save_screenshot("launch-finder.svg", str(OUT))
    await pilot.press("escape")


def add_people(target: Target) -> None:
    """A team beside the server's own account, for the People view."""
    with Client(target) as client:
        for name, role, envs in (("alice", "operator", ["Development", "Test"]),
                                 ("bob", "approver", []), ("carol", "viewer", [])):
            client.post("/api/people", {"name": name})
            client.post(f"/api/people/{name}/grants", {"role": role, "environments": envs})
        client.post("/api/tokens", {"person": "alice", "label": "laptop",
                                    "expires_s": 90 * 86400})


def shoot_browser(target: Target) -> None:
    """The console in a browser (`workdeck web`), in Debian's headless Chromium: a PNG,
    since the page draws the terminal on a canvas."""
    import socket
    import subprocess

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--data-dir", str(target.data_dir.root), "web",
         "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=ROOT)
    try:
        link = server.stdout.readline().rsplit(" ", 1)[-1].strip()  # type: ignore[union-attr]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 760})
            page.goto(link, wait_until="domcontentloaded")
            page.wait_for_selector("body.-first-byte", timeout=30_000)
            page.wait_for_timeout(3000)  # the first frames, the sparklines filled
            page.screenshot(path=str(OUT / "web-console.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="wd-shots-"))
    target = Target(DataDir(root / "data"))
    try:
        start_server(target, extra_args=DEMO_ARGS)
        wait_until_checked(target)
        # A few rounds of checks give the latency history something to show.
        with Client(target) as client:
            for _ in range(12):
                client.post("/api/checks", {"workers": ["p-web-local-worker-01"]})
        add_people(target)
        asyncio.run(shoot(target))
        shoot_browser(target)
    finally:
        stop_server(target)
        shutil.rmtree(root, ignore_errors=True)
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
