"""Benchmark: the console in a browser (`workdeck web`) beside the same console in a terminal.

Usage: .venv/bin/python bench/web.py [--rounds 5]

On the demo fleet (its server started here, its workers checked), each round measures:

- in Debian's headless Chromium (Playwright): from opening the sign-in link to the
  Dashboard drawn with its counts (the first websocket message from the console holding
  "healthy": it carries the terminal's output, text and all), and from a key (`w`, the
  Workers view; `h`, back to the Dashboard) to the message that draws the view's title;
- in a terminal (tmux, 160 by 45), the peer: from starting `workdeck` to the Dashboard
  drawn with its counts, and from the same keys to the view's title changed (the pane
  read every 5 ms).

Prints the median and the worst of the rounds for each.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console.client import Client, Target, start_server  # noqa: E402
from console.demo import DEMO_ARGS, stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def browser_round(link: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    frames: list[tuple[float, bytes]] = []

    def received(data: bytes | str) -> None:
        frames.append((time.perf_counter(), data.encode() if isinstance(data, str) else data))

    def drawn(after: int, text: bytes, since: float) -> float | None:
        return next((at - since for at, data in frames[after:] if text in data), None)

    def wait_drawn(after: int, text: bytes, since: float) -> float:
        deadline = time.perf_counter() + 30
        while (found := drawn(after, text, since)) is None:
            if time.perf_counter() > deadline:
                raise SystemExit(f"the browser's console never drew {text!r}")
            page.wait_for_timeout(2)
        return found

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.on("websocket", lambda ws: ws.on("framereceived", received))
        started = time.perf_counter()
        page.goto(link, wait_until="domcontentloaded")
        figures = {"Dashboard": wait_drawn(0, b"healthy", started)}
        page.wait_for_timeout(2000)  # settled
        page.mouse.click(700, 700)
        page.wait_for_timeout(300)
        for key, title, name in (("w", b"Workers", "key w"), ("h", b"Dashboard", "key h")):
            seen, pressed = len(frames), time.perf_counter()
            page.keyboard.press(key)
            figures[name] = wait_drawn(seen, title, pressed)
            page.wait_for_timeout(1000)
        browser.close()
    return figures


def pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True).stdout


def until_pane(session: str, check, timeout: float = 30) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if check(pane(session)):
            return time.perf_counter() - started
        time.sleep(0.005)
    raise SystemExit(f"the terminal console did not show it in {timeout} s")


def terminal_round(data_dir: Path) -> dict[str, float]:
    session = "wd-bench-web"
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    started = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45",
                    f"{sys.executable} -m console.cli --data-dir {data_dir}"], check=True)
    until_pane(session, lambda text: text.startswith(" Dashboard") and "healthy" in text)
    figures = {"Dashboard": time.perf_counter() - started}
    time.sleep(2)
    for key, title, name in (("w", " Workers", "key w"), ("h", " Dashboard", "key h")):
        pressed = time.perf_counter()
        subprocess.run(["tmux", "send-keys", "-t", session, key], check=True)
        until_pane(session, lambda text, title=title: text.startswith(title))
        figures[name] = time.perf_counter() - pressed
        time.sleep(1)
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return figures


def summary(rounds: list[dict[str, float]], name: str) -> str:
    values = [r[name] * 1000 for r in rounds if name in r]
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} ms (worst {max(values):.0f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wd-bench-web-"))
    target = Target(DataDir(root / "data"))
    port = free_port()
    web = None
    try:
        start_server(target, extra_args=DEMO_ARGS)
        with Client(target) as client:
            deadline = time.monotonic() + 60
            while not all(w["checked_at"] or not w["enabled"]
                          for w in client.get("/api/workers")):
                if time.monotonic() > deadline:
                    raise SystemExit("the demo fleet was not checked in time")
                time.sleep(0.2)
        web = subprocess.Popen([sys.executable, "-m", "console.cli", "--data-dir",
                                str(target.data_dir.root), "web", "--listen",
                                f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        link = web.stdout.readline().rsplit(" ", 1)[-1].strip()  # type: ignore[union-attr]
        browser, terminal = [], []
        for _ in range(args.rounds):
            browser.append(browser_round(link))
            terminal.append(terminal_round(target.data_dir.root))
        print(f"{'':<14}{'browser (workdeck web)':<30}terminal (tmux, the peer)")
        for name in ("Dashboard", "key w", "key h"):
            print(f"{name:<14}{summary(browser, name):<30}{summary(terminal, name)}")
        print(f"({args.rounds} rounds; Dashboard: from opening the link or starting "
              "`workdeck` to it drawn with its counts; a key: from pressing it to the "
              "view's title drawn)")
    finally:
        if web is not None:
            web.terminate()
            web.wait(15)
        stop_server(target)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
