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

from backend.config import DataDir  # noqa: E402
from console.app import WorkdeckApp  # noqa: E402
from console.client import Client, Target, start_server  # noqa: E402
from console.demo import DEMO_ARGS, stop_server  # noqa: E402

SIZE = (150, 40)
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
        await pilot.press("escape", "p", "down", "down")
        await pilot.pause(0.3)
        app.save_screenshot("pools.svg", str(OUT))


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
        asyncio.run(shoot(target))
    finally:
        stop_server(target)
        shutil.rmtree(root, ignore_errors=True)
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
