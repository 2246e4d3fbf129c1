"""Schedules through the real server and command line: made, listed, shown, paused,
resumed and removed; refused with a sentence; times missed while the server was down run
once or are skipped when it starts again; a launch is the person's who made the
schedule, with the grants they hold at that time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from conftest import start_workdeck
from openssh import free_port
from sqlmodel import select
from test_runs import import_runbook, setup_fleet, wait_run
from waiting import eventually

from backend.store.db import Store
from backend.store.models import Schedule

TICK = """
name = "Tick"
[[steps]]
name = "Say"
pool = "Web Pool"
script = "echo tick"
"""


def stop(workdeck):
    assert workdeck.cli("server", "stop").code == 0
    workdeck.process.wait(20)


def start(workdeck, extra=()):
    _data_dir, workdeck.process = start_workdeck(
        workdeck.data_dir.root.parent, workdeck.home, list(extra), database=workdeck.database)


def set_next(workdeck, name, *, ago_s=None, days_earlier=None):
    """As if the server had been down since the schedule's time: `ago_s` seconds ago, or
    its next time `days_earlier` days earlier."""
    store = Store(workdeck.database or workdeck.data_dir.database)
    try:
        with store.write() as session:
            schedule = session.exec(select(Schedule).where(Schedule.name == name)).one()
            schedule.next_at = (datetime.now(UTC) - timedelta(seconds=ago_s)
                                if ago_s is not None else
                                schedule.next_at - timedelta(days=days_earlier))
            session.add(schedule)
    finally:
        store.close()


def shown(workdeck, name):
    result = workdeck.cli("schedule", "show", name, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_schedules_from_the_command_line_and_missed_times_after_a_restart(
        workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, TICK)
    made = workdeck.cli("schedule", "add", "nightly", "--runbook", "Tick", "--env", "Test",
                        "--cron", "0 3 * * *", "--timezone", "Europe/Berlin",
                        "--missed", "once")
    assert made.code == 0, made.err
    assert made.out.startswith("Schedule nightly: Tick on Test, at 03:00 every day "
                               "(0 3 * * *, Europe/Berlin); next ")
    assert workdeck.cli("schedule", "add", "skipper", "--runbook", "Tick", "--env", "Test",
                        "--cron", "@daily").code == 0
    for args, said in [
            (("--cron", "0 25 * * *"), "workdeck: In the cron expression '0 25 * * *', the "
             "hour field '25' is not valid (hour: 0-23, with * , - and /).\n"),
            (("--cron", "0 3 * * *", "--timezone", "Mars/Olympus"),
             "workdeck: No time zone is named 'Mars/Olympus': give one such as "
             "Europe/Berlin, America/New_York or UTC.\n"),
            (("--cron", "0 3 * * *", "--env", "Nowhere"),
             "workdeck: No environment is named 'Nowhere' (known: Production, Test).\n")]:
        refused = workdeck.cli("schedule", "add", "bad", "--runbook", "Tick", "--env", "Test",
                               *args)
        assert (refused.code, refused.err) == (1, said)
    listed = workdeck.cli("schedule", "list")
    assert [line.split()[0] for line in listed.out.splitlines()] == ["NAME", "nightly",
                                                                      "skipper"]
    assert "at 03:00 every day (0 3 * * *, Europe/Berlin)" in workdeck.cli("schedule", "show",
                                                                  "nightly").out

    stop(workdeck)
    set_next(workdeck, "nightly", days_earlier=3)  # down over three of its times
    set_next(workdeck, "skipper", days_earlier=3)
    start(workdeck)
    nightly = eventually(lambda: (s := shown(workdeck, "nightly"))["last_run_id"] and s,
                         what="the missed times run once")
    run = wait_run(workdeck, nightly["last_run_id"], lambda r: r["finished_at"])
    assert run["status"] == "succeeded"
    assert run["schedule"] == "nightly"
    assert run["cause"].startswith("schedule nightly, missed 3 times while no server ran")
    assert run["actor"].endswith("(schedule nightly)")
    assert "why: schedule nightly, missed 3 times" in workdeck.cli(
        "runs", "show", str(run["id"])).out
    skipper = eventually(lambda: (s := shown(workdeck, "skipper"))["last_outcome"] and s,
                         what="the skipped times said")
    assert skipper["last_outcome"].startswith("missed 3 times while no server ran")
    assert skipper["last_outcome"].endswith("skipped (it skips missed times)")
    assert skipper["last_run_id"] is None
    assert datetime.fromisoformat(skipper["next_at"]) > datetime.now(UTC)

    paused = workdeck.cli("schedule", "pause", "nightly")
    assert paused.out == "Schedule nightly is paused: it launches nothing until resumed.\n"
    assert "paused" in workdeck.cli("schedule", "list").out
    resumed = workdeck.cli("schedule", "resume", "nightly")
    assert resumed.out.startswith("Schedule nightly goes on: next ")
    assert workdeck.cli("schedule", "remove", "skipper").out == "Removed schedule skipper.\n"
    gone = workdeck.cli("schedule", "show", "skipper")
    assert (gone.code, gone.err) == (1, "workdeck: No schedule is named 'skipper'.\n")


def test_a_schedule_launches_as_its_person_with_the_grants_they_hold_then(
        workdeck, ssh_servers, client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, TICK)
    assert workdeck.cli("user", "add", "alice").code == 0
    assert workdeck.cli("user", "grant", "alice", "operator", "--env", "Test").code == 0
    token = workdeck.cli("token", "create", "--user", "alice", "--label", "laptop"
                         ).out.split()[0]
    port = free_port()
    stop(workdeck)
    listen = ("--listen", f"127.0.0.1:{port}", "--plain-http")
    start(workdeck, listen)
    alice = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
    with alice:
        body = {"name": "hers", "runbook": "Tick", "environment": "Production",
                "cron": "*/10 * * * *"}
        refused = alice.post("/api/schedules", json=body)
        assert refused.status_code == 403
        assert refused.json()["detail"] == ("alice (operator on Test) may not launch runs "
                                            "on Production.")
        made = alice.post("/api/schedules", json={**body, "environment": "Test"})
        assert made.status_code == 201, made.text
        assert made.json()["person"] == "alice"

    stop(workdeck)
    set_next(workdeck, "hers", ago_s=5)  # its time came as the server started
    start(workdeck, listen)
    hers = eventually(lambda: (s := shown(workdeck, "hers"))["last_run_id"] and s,
                      what="her schedule's launch")
    run = wait_run(workdeck, hers["last_run_id"], lambda r: r["finished_at"])
    assert (run["person"], run["actor"]) == ("alice", "alice (schedule hers)")
    assert run["cause"].startswith("schedule hers (")

    # Her grant is gone by the next time: nothing is launched, and it says why.
    assert workdeck.cli("user", "revoke", "alice", "operator", "--env", "Test").code == 0
    stop(workdeck)
    set_next(workdeck, "hers", ago_s=5)
    start(workdeck, listen)
    refused = eventually(lambda: "not launched" in (s := shown(workdeck, "hers"))[
        "last_outcome"] and s, what="her schedule refused")
    assert refused["last_outcome"].endswith(": not launched: alice (no role) may not "
                                            "launch runs on Test.")
    assert refused["last_run_id"] == run["id"]


async def test_the_schedules_view_and_a_runbooks_schedules_in_the_console(
        workdeck, ssh_servers, client_key, tmp_path):
    from test_console import SIZE, until
    from test_console import shown as text_of

    from console.app import WorkdeckApp
    from console.widgets.live_table import LiveTable

    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, TICK)
    assert workdeck.cli("schedule", "add", "nightly", "--runbook", "Tick", "--env", "Test",
                        "--cron", "0 3 * * 1-5", "--timezone", "Europe/Berlin").code == 0
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("colon", *"schedules", "enter")
        await until(pilot, lambda: app.screen.VIEW_NAME == "Schedules")
        table = app.screen.query_one("#schedules-table", LiveTable)
        await until(pilot, lambda: table.row_keys() == ["nightly"])
        assert table.get_cell("nightly", "when").plain == ("At 03:00 on Monday through "
                                                           "Friday (Europe/Berlin)")
        assert "(in " in table.get_cell("nightly", "next").plain
        assert table.get_cell("nightly", "last").plain == "not yet due"
        await pilot.press("space")
        await until(pilot, lambda: table.get_cell("nightly", "next").plain == "paused")
        assert shown(workdeck, "nightly")["paused"]
        await pilot.press("space")
        await until(pilot, lambda: "(in " in table.get_cell("nightly", "next").plain)
        await pilot.press("b")  # the Runbooks view shows the runbook's schedules
        await until(pilot, lambda: app.screen.VIEW_NAME == "Runbooks")
        detail = app.screen.query_one("#runbook-detail")
        await until(pilot, lambda: "nightly on Test: At 03:00 on Monday through Friday "
                    "(Europe/Berlin), next" in text_of(detail))

