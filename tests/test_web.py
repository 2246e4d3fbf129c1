"""`workdeck web`: the console in a real headless Chromium (Debian's, driven by Playwright),
signed in as a person with their token; the sign-in and its refusals over plain HTTP; no
console process outliving its tab or the web server.

The page draws the terminal on a canvas, so what it shows is read from screenshots with
tesseract (OCR), and what the console did from the server's side (who launched the run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import missing
from openssh import free_port
from test_runs import import_runbook, setup_fleet, wait_run
from waiting import eventually

CHROMIUM = "/usr/bin/chromium"
RUNBOOK = """
name = "Greet from a browser"
[[steps]]
name = "Greet"
pool = "Web Pool"
script = "echo HELLO FROM THE BROWSER TAB"
"""


@contextmanager
def web_console(workdeck, *options: str):
    """`workdeck web` on a free loopback port: (its process, its sign-in link, its base)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--data-dir", str(workdeck.data_dir.root), "web",
         "--listen", f"127.0.0.1:{port}", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HOME": str(workdeck.home)})
    try:
        said = process.stdout.readline()  # type: ignore[union-attr]
        link = re.search(r"http://\S+/login\?token=\S+", said)
        assert link, (said, process.stderr.read() if process.poll() is not None else "")
        base = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(base), what="the web console serving")
        yield process, link.group(0), base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def consoles_of(process: subprocess.Popen[str]) -> list[int]:
    """The console processes the web server runs (its children)."""
    found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended: only its parent's wait is missing (its parent was killed here).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_sign_in_takes_the_printed_link_or_a_persons_token_and_refuses_the_rest(
        workdeck):
    workdeck.cli("user", "add", "alice")
    token = workdeck.cli("token", "create", "--user", "alice").out.split()[0]
    with web_console(workdeck) as (_process, link, base):
        with httpx.Client(base_url=base, follow_redirects=False) as browser:
            page = browser.get("/")
            assert page.status_code == 200 and 'name="token"' in page.text  # the form
            # Not signed in: no console.
            assert browser.get("/ws").status_code == 403
            refused = browser.post("/login", data={"token": "not-a-token"})
            assert refused.status_code == 401
            assert "A valid token is required" in refused.text
            signed = browser.post("/login", data={"token": token})
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            cookie = signed.cookies["workdeck_session"]
            assert "httponly" in signed.headers["set-cookie"].lower()
            assert "samesite=strict" in signed.headers["set-cookie"].lower()
            browser.cookies.set("workdeck_session", cookie)
            page = browser.get("/")
            assert "textual.js" in page.text and "googleapis" not in page.text
            # Reached through an SSH tunnel on another port: the console's socket is there.
            tunnelled = browser.get("/", headers={"Host": "127.0.0.1:9999"})
            assert "ws://127.0.0.1:9999/ws" in tunnelled.text
            # A page of another site may not open a console with the cookie.
            other = browser.get("/ws", headers={"Origin": "http://evil.example"})
            assert other.status_code == 403
            # Her token revoked: signed out, told why, no console.
            [made] = [t for t in json.loads(workdeck.cli("token", "list", "--json").out)
                      if t["person"] == "alice"]
            assert workdeck.cli("token", "revoke", str(made["id"])).code == 0
            gone = browser.get("/")
            assert gone.status_code == 401 and "A valid token is required" in gone.text
            assert browser.get("/ws").status_code == 403
        with httpx.Client(base_url=base, follow_redirects=False) as browser:
            by_link = browser.get(link[len(base):])
            assert by_link.status_code == 303 and "workdeck_session" in by_link.cookies


def test_plain_http_is_served_on_loopback_only(workdeck):
    said = workdeck.cli("web", "--listen", "0.0.0.0:8471")
    assert said.code == 1
    assert said.err.strip() == (
        "workdeck: workdeck web serves plain HTTP, so only on a loopback address, not "
        "0.0.0.0: from another machine, tunnel to it (ssh -L 8471:127.0.0.1:8471 "
        "THIS_HOST).")
    assert "is not one" in workdeck.cli("web", "--listen", "nowhere").err


def need_browser() -> None:
    if not Path(CHROMIUM).exists() or shutil.which("tesseract") is None:
        missing("Chromium or tesseract is not installed (apt-get install chromium "
                "tesseract-ocr)", "the browser console tests")


def read_page(page, tmp_path: Path, name: str, top: int | None = None) -> str:  # type: ignore[no-untyped-def]
    """What the page shows, read by OCR (only its `top` pixels when given: faster)."""
    shot = tmp_path / f"{name}.png"
    clip = {"x": 0, "y": 0, "width": 1400, "height": top} if top else None
    page.screenshot(path=str(shot), clip=clip)
    return subprocess.run(["tesseract", str(shot), "-", "--psm", "6"], capture_output=True,
                          text=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"}).stdout


def test_the_console_in_a_browser(workdeck, ssh_servers, client_key, tmp_path):
    """Signed in with alice's token: the Dashboard, a key to the Workers view, a runbook
    launched from the keyboard whose log lines appear; the run is alice's. Closing the tab
    ends its console; killing the web server ends the consoles it ran."""
    need_browser()
    from playwright.sync_api import sync_playwright

    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, RUNBOOK)
    workdeck.cli("user", "add", "alice")
    workdeck.cli("user", "grant", "alice", "operator", "--env", "Test")
    token = workdeck.cli("token", "create", "--user", "alice").out.split()[0]
    with web_console(workdeck) as (server, _link, base), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(base + "/", wait_until="domcontentloaded")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            # The console's first bytes reached the page: it draws from now on.
            page.wait_for_selector("body.-first-byte", timeout=30_000)
            eventually(lambda: read_page(page, tmp_path, "dashboard", 40).startswith(
                "Dashboard"),
                       timeout=60, interval=1, what="the Dashboard in the browser")
            assert "alice" in read_page(page, tmp_path, "top", 40)
            [console] = consoles_of(server)

            page.mouse.click(700, 700)  # the terminal has the keyboard
            page.keyboard.press("w")
            eventually(lambda: read_page(page, tmp_path, "title", 40).startswith("Workers"),
                       timeout=60, interval=1, what="the Workers view in the browser")
            assert "t-web-local-worker-01" in read_page(page, tmp_path, "workers", 80).replace(
                " ", "")

            # `l`, part of the name, enter; Test, enter: launched, its Run view opens.
            for key in ["l", *"greet", "Enter"]:
                page.keyboard.press(key)
            page.wait_for_timeout(1500)  # the launch dialog reads the runbook
            page.keyboard.press("t")
            page.keyboard.press("Enter")

            def launched() -> dict:
                with workdeck.client() as client:
                    runs = client.get("/api/runs")
                assert runs, "no run yet"
                return runs[0]

            run = eventually(launched, timeout=60, interval=0.5, what="the run launched")
            assert (run["runbook"], run["environment"], run["person"]) == (
                "Greet from a browser", "Test", "alice")
            wait_run(workdeck, run["id"], lambda r: r["status"] == "succeeded", timeout=60)
            eventually(lambda: "HELLO FROM THE BROWSER TAB" in read_page(page, tmp_path, "run"),
                       timeout=60, interval=1, what="the run's log line in the browser")
            page.screenshot(path=str(tmp_path / "run-in-browser.png"))

            # The tab closed: its console quits.
            page.close()
            eventually(lambda: not alive(console), timeout=30, what="the tab's console gone")

            # Another tab; then the web server killed outright: its console ends too.
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(base + "/", wait_until="domcontentloaded")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_selector("body.-first-byte", timeout=30_000)
            [console] = eventually(lambda: consoles_of(server), what="the second console")
        finally:
            browser.close()
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        eventually(lambda: not alive(console), timeout=30,
                   what="the console of a killed web server gone")
