"""Long logs are reachable whole: the server finds the first error and any text in the
whole log, forwards and backwards, and serves any window of it."""

from __future__ import annotations

import pytest
from test_runs import import_runbook, launch, setup_fleet, wait_run

LINES = 200_000
# Output line k is log line k + 1: the step's opening note is line 1.
LONG = f"""
name = "Long"
[[steps]]
name = "Print"
pool = "Web Pool"
script = '''
seq 1 {LINES} | awk '{{ if ($1 == 9 || $1 == 50000 || $1 == 150001)
  print "ERROR: boom at " $1; else print "line " $1 }}'
# stdout and stderr are two pipes, with no order between them: under load the stderr
# line could overtake stdout still in flight and be numbered among it. Let it drain.
sleep 1
echo "fatal: on stderr near the end" >&2
'''
"""


@pytest.fixture
def long_run(workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, LONG)
    run = launch(workdeck, "Long")
    wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=120)
    return run["id"]


def find(workdeck, run_id, **params):
    with workdeck.client() as client:
        return client.get(f"/api/runs/{run_id}/log/find", params=params)["line"]


def window(workdeck, run_id, after, limit):
    from wire.logcodec import expand

    with workdeck.client() as client:
        return [line for event, data in client.stream_events(
            f"/api/runs/{run_id}/log", {"after": str(after), "limit": str(limit)})
            if event == "chunks" for chunk in data for line in expand(chunk)]


def test_the_server_finds_in_the_whole_log_and_serves_any_window(workdeck, long_run):
    first = find(workdeck, long_run, errors="true")
    assert first["seq"] == 10 and first["text"] == "ERROR: boom at 9"
    second = find(workdeck, long_run, errors="true", after=10)
    assert second["seq"] == 50_001
    last = find(workdeck, long_run, errors="true", before=LINES + 10)
    assert last["stream"] == "stderr" and last["text"].startswith("fatal")
    assert find(workdeck, long_run, text="BOOM AT 150001")["seq"] == 150_002
    assert find(workdeck, long_run, text="boom", before=150_002)["seq"] == 50_001
    assert find(workdeck, long_run, text="no such text anywhere") is None
    assert find(workdeck, long_run, text="line 5", position=2) is None  # no step 2
    # `step`: the name of `position` one release ago, still understood and given.
    assert find(workdeck, long_run, text="line 5", step=2) is None
    assert find(workdeck, long_run, text="line 5", step=1)["step"] == 1
    lines = window(workdeck, long_run, after=99_990, limit=20)
    assert [line["seq"] for line in lines] == list(range(99_991, 100_011))
    assert lines[0]["text"] == "line 99990" and lines[0]["at"] > 0  # stamped mid-chunk
    with workdeck.client() as client:
        from console.client import ApiError

        with pytest.raises(ApiError, match="Say what to find"):
            client.get(f"/api/runs/{long_run}/log/find")


async def open_run(app, pilot, run_id):
    from test_console import until

    from console.screens.run import RunScreen

    await until(pilot, lambda: app.fleet_loaded)
    screen = RunScreen(run_id)
    app.push_screen(screen)
    await until(pilot, lambda: screen.is_mounted and screen.log_view.entries)
    return screen


async def test_the_run_view_reaches_every_line_of_a_long_log(workdeck, long_run):
    from test_console import SIZE, until

    from console.app import WorkdeckApp

    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, long_run)
        view = screen.log_view
        # Reopened, it lands at the end, and says how much comes before what it loaded.
        await until(pilot, lambda: view.last_seq >= LINES + 3)
        await until(pilot, lambda: view.scroll_y >= view.max_scroll_y > 0)
        assert view.following and view.first_seq > 1
        assert "earlier lines: scroll up or Home" in "".join(
            segment.text for segment in view.render_line(0 - int(view.scroll_y)))
        # e: the first error of the whole log, not of what was loaded.
        await pilot.press("e")
        await until(pilot, lambda: view.marked == 10 and view.holds(10))
        assert not view.following
        # Search goes through the whole log, forwards and back.
        await pilot.press("slash", *"boom at 150001", "enter")
        # The line found holds the text, and the view holds the line (by its text: its
        # number is the server's to give).
        await until(pilot, lambda: view.marked is not None and view.marked > 100_000
                    and view.holds(view.marked))
        [found] = [e for e in view.entries if e["seq"] == view.marked]
        assert found["text"] == "ERROR: boom at 150001"
        marked = view.marked
        await pilot.press("N")  # before it nothing holds that text: it goes round to itself
        await pilot.pause(0.5)
        assert view.marked == marked
        # Home: the log's first line.
        view.focus()
        await pilot.press("home")
        await until(pilot, lambda: view.first_seq == 1)
        assert view.entries[0]["seq"] == 1
        # From a window in the middle, scrolling up to its top brings the lines before.
        screen.load_around(100_000)
        await until(pilot, lambda: view.holds(100_000) and view.first_seq > 1)
        before = view.first_seq
        view.scroll_to(y=0, animate=False, immediate=True)
        await until(pilot, lambda: view.first_seq < before)
        assert [e["seq"] for e in list(view.entries)[:3]] == [view.first_seq + i
                                                              for i in range(3)]
        # End: back to the live end (the run is over: its last line).
        await pilot.press("end")
        await until(pilot, lambda: view.following and view.last_seq >= LINES + 3)
        # Wrap is a way of showing, not a scroll: following goes on.
        await pilot.press("w")
        await until(pilot, lambda: view.wrap and view.scroll_y >= view.max_scroll_y)
        assert view.following
        await pilot.press("w")
        await until(pilot, lambda: not view.wrap)
        assert view.following


async def test_a_paused_view_does_not_move_while_lines_arrive(workdeck, ssh_servers,
                                                              client_key, tmp_path,
                                                              monkeypatch):
    from test_console import SIZE, until

    from console.app import WorkdeckApp
    from console.widgets import log_view

    monkeypatch.setattr(log_view, "MAX_LINES", 3000)  # the window fills up quickly
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Trickle"
[[steps]]
name = "Print"
pool = "Web Pool"
script = "seq 1 2500; i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo tick $i; sleep 0.01; done"
""")
    run = launch(workdeck, "Trickle")
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, run["id"])
        view = screen.log_view
        await until(pilot, lambda: view.last_seq > 2600)
        view.focus()
        await pilot.press("pageup", "pageup")
        await until(pilot, lambda: not view.following)
        top = view.top_seq()
        shown = [view.render_line(y).text for y in range(5)]
        await until(pilot, lambda: view.pending > 100 and not view.attached, timeout=30)
        assert view.top_seq() == top  # the text under the reader stays where it was
        assert [view.render_line(y).text for y in range(5)] == shown
        await pilot.press("f")
        await until(pilot, lambda: view.following and view.pending == 0)
    wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=60)


def test_the_log_as_plain_text_at_a_url(workdeck, ssh_servers, client_key, tmp_path):
    import shutil
    import subprocess

    from conftest import ON_CI

    curl = shutil.which("curl")
    if curl is None:
        (pytest.fail if ON_CI else pytest.skip)("curl is not installed (apt-get install curl)")
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Short"
[[steps]]
name = "Say"
pool = "Web Pool"
script = "echo one; echo two >&2; sleep 1; echo three"
""", "short.toml")
    run = launch(workdeck, "Short")
    url = f"http://workdeck/api/runs/{run['id']}/log.txt"
    socket = str(workdeck.data_dir.socket)
    # Followed from the start: it ends when the run does, with every line.
    followed = subprocess.run([curl, "-sS", "--unix-socket", socket, url + "?follow=1"],
                              capture_output=True, text=True, timeout=60)
    assert followed.returncode == 0, followed.stderr
    printed = workdeck.cli("runs", "log", str(run["id"])).out
    assert followed.stdout == printed  # the same text as `workdeck runs log`
    assert "] one\n" in printed and "] ! two\n" in printed and "] three\n" in printed
    whole = subprocess.run([curl, "-sS", "--unix-socket", socket, url],
                           capture_output=True, text=True, timeout=60)
    assert whole.stdout == printed
    missing = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "--unix-socket", socket, "http://workdeck/api/runs/9999/log.txt"],
                             capture_output=True, text=True, timeout=60)
    assert missing.stdout == "404"
