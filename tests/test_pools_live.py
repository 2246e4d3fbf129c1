"""Pools live through the real server: figures, leases, queue, drain, history, advisor,
and the console's Dashboard meters and Pools view."""

from __future__ import annotations

import json

from conftest import both_stores, start_workdeck
from test_console import SIZE, until
from test_runs import import_runbook, launch, setup_fleet, wait_run
from waiting import eventually

from console.app import WorkdeckApp
from console.widgets.live_table import LiveTable

pytestmark = both_stores

HOLD = """
name = "Hold"
[[steps]]
name = "Hold a slot"
pool = "Web Pool"
script = "echo holding; sleep 30"
"""

FIGURES = {"capacity", "leased", "queued", "utilization", "healthy_workers", "workers"}


def pool(workdeck, name="Web Pool"):
    with workdeck.client() as client:
        return client.get(f"/api/pools/{name}")


def until_pool(workdeck, predicate, timeout=15):
    return eventually(lambda: (shown := pool(workdeck)) and predicate(shown) and shown,
                      timeout=timeout, what="the pool's state")


def test_leases_queue_and_drain_through_the_api_and_cli(workdeck, ssh_servers, client_key,
                                                        tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=2)
    import_runbook(workdeck, tmp_path, HOLD)
    listed = json.loads(workdeck.cli("pool", "list", "--json").out)
    web = next(p for p in listed if p["name"] == "Web Pool")
    assert set(web) >= FIGURES and (web["capacity"], web["leased"], web["workers"]) == (8, 0, 2)

    # Eight slots: ten holding steps take all eight and queue two.
    runs = [launch(workdeck, "Hold")["id"] for _ in range(10)]
    shown = until_pool(workdeck, lambda p: p["leased"] == 8 and p["queued"] == 2)
    assert shown["utilization"] == 1.0
    assert [q["run_id"] for q in shown["queue"]] == runs[8:]  # in the order they came
    assert len(shown["leases"]) == 8
    lease = shown["leases"][0]
    assert lease["step_name"] == "Hold a slot" and "fewest" in lease["worker_reason"]
    # Their names of one release ago come too (README, "Changed").
    assert (lease["step"], lease["reason"]) == (lease["step_name"], lease["worker_reason"])
    assert {m["leased"] for m in shown["member_workers"]} == {4}
    out = workdeck.cli("pool", "show", "Web Pool").out
    assert "8 of 8 slots leased (100%), 2 steps queued" in out and "Queued" in out

    # Drain one worker: its four steps go on, it takes none of the queue.
    result = workdeck.cli("worker", "drain", "t-web-local-worker-01")
    assert result.code == 0 and "4 steps still running on it finish there" in result.out
    worker = json.loads(workdeck.cli("worker", "show", "t-web-local-worker-01", "--json").out)
    assert worker["draining"] and worker["leased"] == 4
    drained_runs = {lease["run_id"] for lease in pool(workdeck)["leases"]
                    if lease["worker"] == "t-web-local-worker-01"}
    for run_id in drained_runs:  # its steps end: its slots go, not to the queue
        workdeck.cli("runs", "cancel", str(run_id))
    shown = until_pool(workdeck, lambda p: p["leased"] == 4)
    assert shown["capacity"] == 4 and shown["queued"] == 2 and shown["draining_workers"] == 1
    assert "t-web-local-worker-01" not in {lease["worker"] for lease in shown["leases"]}
    # Undrained, it takes the queue at once.
    workdeck.cli("worker", "undrain", "t-web-local-worker-01")
    shown = until_pool(workdeck, lambda p: p["queued"] == 0 and p["leased"] == 6)
    for run_id in runs:
        workdeck.cli("runs", "cancel", str(run_id))
    until_pool(workdeck, lambda p: p["leased"] == 0 and not p["leases"])  # nothing leaks
    for run_id in runs:
        wait_run(workdeck, run_id, lambda r: r["finished_at"])


def test_utilization_history_survives_a_server_restart(workdeck, ssh_servers, client_key,
                                                       tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, HOLD)
    run = launch(workdeck, "Hold")
    # Sampled (a lease wakes the sampler), then given back and sampled again.
    until_pool(workdeck, lambda p: p["usage_history"] and p["usage_history"][-1][1] == 1)
    workdeck.cli("runs", "cancel", str(run["id"]))
    until_pool(workdeck, lambda p: p["leased"] == 0 and p["usage_history"][-1][1] == 0)
    shown = pool(workdeck)
    assert shown["history"] == shown["usage_history"]  # its name of one release ago
    workdeck.cli("server", "stop")
    workdeck.process.wait(10)
    _data_dir, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home,
                                                 database=workdeck.database)
    leased_then_given_back(pool(workdeck)["history"])
    with workdeck.client() as client:
        snapshot = next(data for event, data in client.stream_events("/api/events")
                        if event == "snapshot")
    leased_then_given_back(snapshot["usage_history"]["Web Pool"])


def leased_then_given_back(history):
    # The new server samples the pool as it starts (0 again): only the order matters.
    values = [point[1] for point in history]
    last_busy = max(i for i, value in enumerate(values) if value)
    assert values[last_busy] == 1 and values[last_busy + 1:], values
    assert set(values[last_busy + 1:]) == {0}, values


def test_the_advisor_flags_each_recommendation_broken(workdeck, ssh_servers, client_key):
    server = ssh_servers()

    def add(name, *extra):
        result = workdeck.cli("worker", "add", name, "--host", server.host, "--port",
                              str(server.port), "--key-path", str(client_key), *extra)
        assert result.code == 0, result.err

    workdeck.cli("pool", "add", "Lonely Test Worker Pool")  # no description
    add("webserver", "--pool", "Lonely Test Worker Pool", "--user", "deploy")  # bad name
    add("t-web-local-worker-01", "--pool", "web pool", "--user", "root")
    workdeck.cli("settings", "--builtin-worker", "on")
    result = workdeck.cli("advise", "--json")
    assert result.code == 1
    findings = json.loads(result.out)
    found = {(f["check"], f["name"]) for f in findings}
    assert ("pool-redundancy", "Lonely Test Worker Pool") in found  # fewer than two
    assert ("pool-description", "Lonely Test Worker Pool") in found
    assert ("pool-name", "web pool") in found
    assert ("worker-name", "webserver") in found
    assert ("worker-account", "t-web-local-worker-01") in found  # root
    assert ("builtin-worker", "built-in-worker") in found
    assert all(f["advice"].endswith(".") and f["finding"] for f in findings)
    assert findings[0]["severity"] == "critical"  # the most serious first
    human = workdeck.cli("advise").out
    assert "logs in as root" in human and "critical" in human
    # A worker without --user logs in as the server's own account: flagged too.
    add("t-web-local-worker-02", "--pool", "Lonely Test Worker Pool")
    shared = [f for f in json.loads(workdeck.cli("advise", "--json").out)
              if f["check"] == "worker-account" and f["name"] == "t-web-local-worker-02"]
    assert shared and ("logs in as root" in shared[0]["finding"]  # a server run as root
                       or "the account the server runs as" in shared[0]["finding"])
    # The naming convention is a setting; a bad pattern is refused clearly.
    bad = workdeck.cli("settings", "--worker-name-pattern", "([")
    assert bad.code != 0 and "not a regular expression" in bad.err
    workdeck.cli("settings", "--worker-name-pattern", "[a-z-]+(-[0-9]+)?")
    assert ("worker-name", "webserver") not in {
        (f["check"], f["name"]) for f in json.loads(workdeck.cli("advise", "--json").out)}


def test_a_fleet_that_follows_the_recommendations_has_no_findings(workdeck, ssh_servers,
                                                                  client_key):
    servers = [ssh_servers(), ssh_servers()]
    workdeck.cli("pool", "add", "Local Test Web Worker Pool", "--description", "web, Test")
    for index, server in enumerate(servers, 1):
        result = workdeck.cli("worker", "add", f"t-web-local-worker-0{index}", "--host",
                              server.host, "--port", str(server.port), "--key-path",
                              str(client_key), "--user", "deploy", "--pool",
                              "Local Test Web Worker Pool", "--trust-host-key")
        assert result.code == 0, result.err
    workdeck.cli("check")
    # The default pool has no worker (the built-in one is off): the one finding left.
    findings = json.loads(workdeck.cli("advise", "--json").out)
    assert [(f["check"], f["name"]) for f in findings] == [
        ("pool-redundancy", "Default Worker Pool")]
    third = ssh_servers()
    for index, server in ((3, third), (4, servers[0])):
        workdeck.cli("worker", "add", f"t-any-local-worker-0{index}", "--host", server.host,
                     "--port", str(server.port), "--key-path", str(client_key), "--user", "deploy",
                     "--pool", "Default Worker Pool", "--trust-host-key")
    workdeck.cli("check")
    result = workdeck.cli("advise")
    assert result.code == 0, result.out
    assert "No findings" in result.out


async def test_dashboard_meters_and_the_pools_view(workdeck, ssh_servers, client_key,
                                                  tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, HOLD)
    app = WorkdeckApp(workdeck.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        pools = app.screen.query_one("#pools-table", LiveTable)
        await until(pilot, lambda: pools.has_row("Web Pool"))
        assert pools.get_cell("Web Pool", "leased").plain == "0/4"
        runs = [launch(workdeck, "Hold")["id"] for _ in range(5)]
        # Pushed: four slots taken, one step queued, the meter full.
        # (Both at once: while the five launches arrive, "1 queued" can show beside 3/4.)
        await until(pilot, lambda: pools.get_cell("Web Pool", "queued").plain == "1"
                    and pools.get_cell("Web Pool", "leased").plain == "4/4")
        assert "100%" in pools.get_cell("Web Pool", "utilization").plain
        assert "Advisor" in str(app.screen.query_one("#advisor-line").render())
        await pilot.press("p")
        screen = app.screen
        table = screen.query_one("#pools-table", LiveTable)
        await until(pilot, lambda: table.has_row("Web Pool"))
        screen.select_pool("Web Pool")
        leases = screen.query_one("#leases-table", LiveTable)
        queue = screen.query_one("#queue-table", LiveTable)
        await until(pilot, lambda: leases.row_count == 4 and queue.row_count == 1)
        key = queue.row_keys()[0]
        assert queue.get_cell(key, "run").plain == str(runs[4])
        assert "fewest" in leases.get_cell(leases.row_keys()[0], "reason").plain
        members = screen.query_one("#members-table", LiveTable)
        assert members.get_cell("t-web-local-worker-01", "leased").plain == "4/4"
        # d drains the selected member, once confirmed; the view says so.
        from console.screens.modals import ConfirmDialog

        members.focus()
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: "draining" in members.get_cell(
            "t-web-local-worker-01", "reason").plain)
        await pilot.press("d")
        await until(pilot, lambda: "draining" not in members.get_cell(
            "t-web-local-worker-01", "reason").plain)
        for run_id in runs:
            workdeck.cli("runs", "cancel", str(run_id))
        await until(pilot, lambda: leases.row_count == 0 and queue.row_count == 0)
