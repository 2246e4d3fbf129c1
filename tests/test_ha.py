"""Several server nodes on one PostgreSQL database, as real processes: each sees what the
others do, asks the node that executes a run to cancel it or decide, and takes over what
a node that dies (or pauses past its lease) left, which that node then cannot write over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Workdeck, short_tmp, start_workdeck, stop_workdeck
from test_run_promises import follow_in_background
from test_runs import import_runbook, log_lines, setup_fleet, wait_run
from waiting import eventually

from console.errors import ServerUnavailable

pytestmark = pytest.mark.parametrize("store_kind", ["postgresql"], indirect=True)

HEARTBEAT_S, LEASE_S = 0.5, 2.0  # quick, so that a death is seen within seconds


@pytest.fixture
def nodes(workdeck):
    """The test's server (node "a" is whatever it is named) and a node "b" on the same
    database, with quick heartbeats."""
    result = workdeck.cli("settings", "--node-heartbeat", str(HEARTBEAT_S),
                          "--node-lease", str(LEASE_S))
    assert result.code == 0, result.err
    started: list[Workdeck] = []

    def start(name: str, same_key: bool = True, extra: tuple[str, ...] = ()) -> Workdeck:
        root = short_tmp(f"wd-{name}-")
        home = root / "home"
        (home / ".ssh").mkdir(parents=True)
        if same_key:  # every node holds the key of the runs' sensitive values
            (root / "data").mkdir(mode=0o700)
            shutil.copy2(workdeck.data_dir.secret_key, root / "data" / "secret.key")
        data_dir, process = start_workdeck(root, home, extra=["--node", name, *extra],
                                           database=workdeck.database)
        started.append(Workdeck(data_dir, home, process, workdeck.database))
        return started[-1]

    second = start("b")
    with workdeck.client() as client:
        first = client.get("/api/server")["node"]
    eventually(lambda: {n["name"]: n["state"] for n in json.loads(
        second.cli("nodes", "--json").out)} == {first: "up", "b": "up"},
        what="both nodes up, as b sees them")
    yield workdeck, second, start
    for deck in [workdeck, *started]:  # shown when the test failed
        print(f"---- {deck.data_dir.root}\n{deck.log()[-8000:]}")
    with workdeck.client() as client:
        for run in client.get("/api/runs"):
            print(workdeck.cli("runs", "show", str(run["id"])).out)
    for deck in started:
        assert not stop_workdeck(deck.process, deck.data_dir)


ACROSS = """
name = "Across nodes"
[[steps]]
name = "Talk"
pool = "Web Pool"
script = "for i in 1 2 3; do echo line $i; sleep 0.2; done"
[[steps]]
name = "Approve"
manual = "Look, then approve."
[[steps]]
name = "After"
pool = "Web Pool"
script = "echo after"
"""

SLOW = """
name = "Slow"
[[steps]]
name = "Sleep"
pool = "Web Pool"
script = "echo $$ > {pidfile}; echo started; sleep 600"
"""


def viewer_token(deck):
    """A token of a person "ops" who may view: a client at a node's URL needs one."""
    assert deck.cli("user", "add", "ops").code == 0
    assert deck.cli("user", "grant", "ops", "viewer").code == 0
    created = deck.cli("token", "create", "--user", "ops")
    assert created.code == 0, created.err
    return created.out.split()[0]


def launch_on(deck, runbook, env="Test", **variables):
    with deck.client() as client:
        return client.post("/api/runs", {"runbook": runbook, "environment": env,
                                         "variables": variables})


def test_a_run_on_one_node_is_seen_followed_and_decided_on_another(
        nodes, ssh_servers, client_key, tmp_path):
    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=2)
    import_runbook(a, tmp_path, ACROSS)
    # What a console on node a is shown: every change of the run node b executes.
    seen: list[dict] = []

    def watch():
        with a.client() as client, contextlib.suppress(ServerUnavailable):  # a stopped
            for event, data in client.stream_events("/api/events"):
                if event == "changes":
                    seen.extend(c["data"] for c in data if c["type"] == "run")

    threading.Thread(target=watch, daemon=True).start()
    run = launch_on(b, "Across nodes")
    assert run["node"] == "b"
    follower, said = follow_in_background(a, "runs", "log", str(run["id"]), "--follow")
    waiting = wait_run(a, run["id"], lambda r: r["waiting"])  # read on a, from the store
    assert waiting["waiting"]["actions"] == ["abort", "approve"]
    decided = a.cli("runs", "decide", str(run["id"]), "approve", "--note", "looked")
    assert decided.code == 0, decided.err
    assert "approve recorded" in decided.out
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0, out + "".join(said)
    assert all(f"line {i}" in out for i in (1, 2, 3)) and "after" in out
    done = wait_run(a, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded" and done["node"] == "b"
    assert [(d["action"], d["note"]) for d in done["decisions"]] == [("approve", "looked")]
    eventually(lambda: any(r["id"] == run["id"] and r["status"] == "succeeded"
                           for r in seen), what="a's console shown b's run succeed")
    assert any(r["id"] == run["id"] and r["status"] == "waiting" for r in seen)
    # A refusal by the executing node comes back as it said it.
    again = launch_on(b, "Across nodes")
    try:
        wait_run(a, again["id"], lambda r: r["waiting"])
    except AssertionError:
        print(a.cli("runs", "show", str(again["id"])).out, b.log()[-5000:])
        raise
    refused = a.cli("runs", "decide", str(again["id"]), "retry")
    assert refused.code == 1 and "is waiting for abort or approve, not 'retry'" in refused.err
    assert a.cli("runs", "cancel", str(again["id"])).code == 0
    cancelled = wait_run(a, again["id"], lambda r: r["finished_at"])
    assert cancelled["status"] == "cancelled" and "cancelled by" in cancelled["reason"]


def slow_step_on_b(a, b, ssh_servers, client_key, tmp_path):
    """A run executed by b, its step under way (sleeping): the run, the step's pid."""
    setup_fleet(a, ssh_servers, client_key, count=1)
    pidfile = tmp_path / "step.pid"
    import_runbook(a, tmp_path, SLOW.format(pidfile=pidfile))
    run = launch_on(b, "Slow")
    eventually(lambda: any(line["text"] == "started" for line in log_lines(a, run["id"])),
               what="the step under way on b")
    return run, int(pidfile.read_text())


def test_a_node_killed_mid_run_is_taken_over_and_its_step_killed_on_the_worker(
        nodes, ssh_servers, client_key, tmp_path):
    a, b, _start = nodes
    run, step_pid = slow_step_on_b(a, b, ssh_servers, client_key, tmp_path)
    b.process.send_signal(signal.SIGKILL)
    b.process.wait(10)
    done = wait_run(a, run["id"], lambda r: r["finished_at"], timeout=30)
    assert done["status"] == "interrupted" and done["node"] != "b"
    assert done["reason"].startswith("node b stopped answering"), done["reason"]
    assert done["steps"][0]["status"] == "interrupted"
    texts = [line["text"] for line in log_lines(a, run["id"])]
    assert texts[-1].startswith("interrupted: node b stopped answering")
    # What was left of the step on the worker is killed, then its slot given back.
    eventually(lambda: not _alive(step_pid), timeout=30, what="the step's process killed")
    eventually(lambda: json.loads(a.cli("pool", "show", "Web Pool", "--json").out)
               ["leased"] == 0, timeout=30, what="the slot given back")
    assert "took over from node b (lost): 1 runs interrupted" in a.log()
    shown = {n["name"]: n["state"] for n in json.loads(a.cli("nodes", "--json").out)}
    assert shown["b"] == "lost"
    # a goes on taking runs.
    assert launch_on(a, "Slow")["node"] != "b"


def test_a_node_paused_past_its_lease_writes_nothing_over_the_takeover(
        nodes, ssh_servers, client_key, tmp_path):
    a, b, _start = nodes
    run, _pid = slow_step_on_b(a, b, ssh_servers, client_key, tmp_path)
    b.process.send_signal(signal.SIGSTOP)
    try:
        done = wait_run(a, run["id"], lambda r: r["finished_at"], timeout=30)
        assert done["status"] == "interrupted"
        lines = len(log_lines(a, run["id"]))
    finally:
        b.process.send_signal(signal.SIGCONT)
    eventually(lambda: "rejoins: the runs it ran were taken over by" in b.log(), timeout=30,
               what="b rejoining")
    assert "was found lost by" in b.log()
    after = wait_run(a, run["id"], lambda r: r["finished_at"])
    assert (after["status"], after["reason"], after["node"]) == \
        (done["status"], done["reason"], done["node"])
    assert len(log_lines(a, run["id"])) == lines  # b wrote no line after the takeover
    # Back, b takes new runs again.
    eventually(lambda: {n["name"]: n["state"] for n in json.loads(
        a.cli("nodes", "--json").out)}.get("b") == "up", what="b up again")
    (tmp_path / "quick.toml").write_text(QUICK)
    assert b.cli("runbook", "import", str(tmp_path / "quick.toml")).code == 0
    quick = launch_on(b, "Quick")
    assert quick["node"] == "b"
    assert wait_run(a, quick["id"], lambda r: r["finished_at"])["status"] == "succeeded"


QUICK = """
name = "Quick"
[[steps]]
name = "Say"
pool = "Web Pool"
script = "echo hello"
"""

SECRET = """
[[steps]]
name = "Secret"
pool = "Web Pool"
script = "echo token $token"
[variables.token]
sensitive = true
"""


def test_a_run_launched_on_a_draining_node_is_claimed_by_another(
        nodes, ssh_servers, client_key, tmp_path):
    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=1)
    import_runbook(a, tmp_path, QUICK + SECRET)
    assert a.cli("node", "drain", "b").code == 0
    # b hears of it at its next heartbeat: until then it claims what it is given.
    run = eventually(lambda: (lambda r: r["node"] == "" and r)(
        launch_on(b, "Quick", token="s3cret-value")), what="b taking no runs")
    done = wait_run(b, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded" and done["node"] not in ("", "b")
    # Sealed by b, opened by the node that claimed it: they hold the same key.
    texts = [line["text"] for line in log_lines(b, run["id"])]
    assert "token ********" in texts and not any("s3cret" in t for t in texts)


def test_two_nodes_named_alike_or_with_another_key_are_refused(nodes):
    _a, _b, start = nodes
    with pytest.raises(RuntimeError, match="A node named b is alive"):
        start("b")
    with pytest.raises(RuntimeError, match="is not the one this store's sensitive values "
                                           "are sealed with"):
        start("c", same_key=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False



HOLD = """
name = "Hold"
[[steps]]
name = "Hold"
pool = "Web Pool"
script = "echo started; while [ ! -e {dir}/release-$WORKDECK_RUN_ID ]; do sleep 0.05; done"
"""


def test_the_queue_for_a_pool_is_first_come_first_served_across_nodes(
        nodes, ssh_servers, client_key, tmp_path):
    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=2)
    for worker in ("t-web-local-worker-01", "t-web-local-worker-02"):
        assert a.cli("worker", "set", worker, "--capacity", "1").code == 0
    import_runbook(a, tmp_path, HOLD.format(dir=tmp_path))

    def started(run):
        return any(line["text"] == "started" for line in log_lines(a, run["id"]))

    def queue():
        return [(q["run_id"], q["node"]) for q in json.loads(
            b.cli("pool", "show", "Web Pool", "--json").out)["queue"]]

    holding = [launch_on(a, "Hold"), launch_on(b, "Hold")]  # both slots taken
    for run in holding:
        eventually(lambda run=run: started(run), what=f"run {run['id']} under way")
    queued = []
    for deck in (a, b, a, b):  # each queued behind the one before, on the other node
        queued.append(launch_on(deck, "Hold"))
        eventually(lambda: len(queue()) == len(queued), what="the step queued")
    assert queue() == [(run["id"], run["node"]) for run in queued]
    # Each slot given back goes to the oldest waiter, whichever node runs it.
    for released, expected in zip(holding + queued[:2], queued, strict=True):
        (tmp_path / f"release-{released['id']}").touch()
        eventually(lambda expected=expected: started(expected),
                   what=f"run {expected['id']} under way")
        later = queued[queued.index(expected) + 1:]
        assert not any(started(run) for run in later), (expected["id"], queue())
        assert queue() == [(run["id"], run["node"]) for run in later]
    for run in queued[2:]:
        (tmp_path / f"release-{run['id']}").touch()
    for run in holding + queued:
        assert wait_run(a, run["id"], lambda r: r["finished_at"])["status"] == "succeeded"


def test_fifty_launches_on_two_nodes_never_exceed_the_pools_slots(
        nodes, ssh_servers, client_key, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime

    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=4)
    for index in range(1, 5):
        assert a.cli("worker", "set", f"t-web-local-worker-0{index}", "--capacity",
                     "2").code == 0
    import_runbook(a, tmp_path, """
name = "Busy"
[[steps]]
name = "Work"
pool = "Web Pool"
script = "sleep 0.3; echo done on $WORKDECK_WORKER"
""")
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda i: launch_on((a, b)[i % 2], "Busy"), range(50)))
    assert {run["node"] for run in runs} == {runs[0]["node"], "b"}
    done = [wait_run(a, run["id"], lambda r: r["finished_at"], timeout=120) for run in runs]
    assert all(run["status"] == "succeeded" for run in done)
    edges = sorted([(datetime.fromisoformat(r["steps"][0]["started_at"]), 1) for r in done]
                   + [(datetime.fromisoformat(r["steps"][0]["finished_at"]), -1)
                      for r in done], key=lambda edge: (edge[0], edge[1]))
    at_once = most = 0
    for _at, change in edges:
        at_once += change
        most = max(most, at_once)
    assert most <= 8, most
    per_worker = {}
    for run in done:
        per_worker[run["steps"][0]["worker"]] = per_worker.get(run["steps"][0]["worker"], 0) + 1
    assert len(per_worker) == 4  # the work was spread


def test_a_client_given_several_nodes_goes_on_with_the_next_when_one_dies(nodes):
    from click.testing import CliRunner
    from openssh import free_port

    from console.cli import cli

    a, _b, start = nodes
    ports = [free_port(), free_port()]
    c, d = (start(name, extra=("--listen", f"127.0.0.1:{port}", "--plain-http"))
            for name, port in zip(("c", "d"), ports, strict=True))
    token = viewer_token(a)
    servers = ",".join(f"http://127.0.0.1:{port}" for port in ports)

    def cli_on_nodes(*args):
        result = CliRunner().invoke(cli, ["--server", servers, *args],
                                    env={"WORKDECK_TOKEN": token})
        return result.exit_code, result.stdout, result.stderr

    code, out, err = cli_on_nodes("server", "status", "--json")
    assert code == 0, err
    assert json.loads(out)["node"] == "c"
    c.process.send_signal(signal.SIGKILL)
    c.process.wait(10)
    code, out, err = cli_on_nodes("server", "status", "--json")
    assert code == 0, err
    assert json.loads(out)["node"] == "d"  # the next one answered
    code, out, _err = cli_on_nodes("nodes")
    assert code == 0 and "d *" in out
    d.process.send_signal(signal.SIGKILL)
    d.process.wait(10)
    code, out, _err = cli_on_nodes("server", "status")
    assert code == 3 and f"No server is running at {servers.replace(',', ' or ')}." in out


async def test_a_console_on_one_node_follows_and_approves_a_run_another_executes(
        nodes, ssh_servers, client_key, tmp_path):
    from test_console import SIZE, until

    from console.app import WorkdeckApp
    from console.screens.modals import NoteDialog
    from console.screens.run import RunScreen
    from console.widgets.log_view import LogView

    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=1)
    import_runbook(a, tmp_path, ACROSS)
    app = WorkdeckApp(a.target)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        run = launch_on(b, "Across nodes")
        assert run["node"] == "b"
        await pilot.press("colon", *f"run {run['id']}", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        log = screen.query_one("#run-log", LogView)
        await until(pilot, lambda: screen.run and screen.run["waiting"], timeout=20)
        await until(pilot, lambda: any(e["text"] == "line 3" for e in log.entries))
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        await pilot.press(*"from a", "enter")
        await until(pilot, lambda: screen.run["status"] == "succeeded", timeout=20)
        await until(pilot, lambda: any(e["text"] == "after" for e in log.entries))
    done = wait_run(a, run["id"], lambda r: r["finished_at"])
    assert done["node"] == "b" and done["decisions"][-1]["note"] == "from a"


PACED = """
name = "Paced"
[[steps]]
name = "Tick"
pool = "Web Pool"
script = '''
for i in $(seq 1 10); do echo tick $i; done
while [ ! -e {tmp_path}/go ]; do sleep 0.05; done
for i in $(seq 11 30); do echo tick $i; done
'''
"""


def paced_behind_two_nodes(nodes, ssh_servers, client_key, tmp_path):
    """The Paced runbook on one worker, and nodes c and d listening on plain HTTP on
    loopback for a client to fail over between: (a, b, c, [c's port, d's port])."""
    from openssh import free_port

    a, b, start = nodes
    setup_fleet(a, ssh_servers, client_key, count=1)
    import_runbook(a, tmp_path, PACED.replace("{tmp_path}", str(tmp_path)))
    ports = [free_port(), free_port()]
    c, _d = (start(name, extra=("--listen", f"127.0.0.1:{port}", "--plain-http"))
             for name, port in zip(("c", "d"), ports, strict=True))
    return a, b, c, ports


async def test_the_run_view_goes_on_from_the_next_node_when_its_node_dies(
        nodes, ssh_servers, client_key, tmp_path, monkeypatch):
    from test_console import SIZE, until

    from console.app import WorkdeckApp
    from console.client import Target
    from console.screens.run import RunScreen
    from console.widgets.log_view import LogView

    a, b, c, ports = paced_behind_two_nodes(nodes, ssh_servers, client_key, tmp_path)
    monkeypatch.setenv("WORKDECK_TOKEN", viewer_token(a))
    run = launch_on(b, "Paced")  # b executes it; c, then d, serve the console
    app = WorkdeckApp(Target(a.data_dir, ",".join(f"http://127.0.0.1:{p}" for p in ports)))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.fleet_loaded)
        await pilot.press("colon", *f"run {run['id']}", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        log = app.screen.query_one("#run-log", LogView)
        await until(pilot, lambda: any(e["text"] == "tick 10" for e in log.entries),
                    timeout=20)
        assert app.target.server_url == f"http://127.0.0.1:{ports[0]}"
        c.process.send_signal(signal.SIGKILL)
        c.process.wait(10)
        (tmp_path / "go").touch()
        await until(pilot, lambda: any(e["text"] == "tick 30" for e in log.entries),
                    timeout=30)
        ticks = [e["text"] for e in log.entries if e["text"].startswith("tick ")]
        assert ticks == [f"tick {i}" for i in range(1, 31)]  # each once, in order
        assert app.target.server_url == f"http://127.0.0.1:{ports[1]}"


def test_a_rolling_restart_of_every_node_loses_no_run(nodes, ssh_servers, client_key,
                                                       tmp_path):
    from test_run_promises import restart

    from console.errors import ApiError

    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=2)
    import_runbook(a, tmp_path, QUICK)
    launched: list[int] = []
    refused: list[str] = []
    done = threading.Event()

    def keep_launching():
        while not done.is_set():
            for deck in (a, b):
                try:
                    launched.append(launch_on(deck, "Quick")["id"])
                except ApiError as exc:  # a node stopped or starting: the other takes it
                    refused.append(str(exc))
            time.sleep(0.3)

    launcher = threading.Thread(target=keep_launching, daemon=True)
    launcher.start()
    try:
        for deck, again in ((b, lambda: _start_again(b, "b")), (a, lambda: restart(a))):
            name = json.loads(deck.cli("server", "status", "--json").out)["node"]
            # As an operator would: drain it, let it finish, restart it, undrain it.
            assert deck.cli("node", "drain", name).code == 0
            drained = datetime.now(UTC) + timedelta(seconds=2 * HEARTBEAT_S)

            def idle(name=name, deck=deck, drained=drained):
                node = next(n for n in json.loads(deck.cli("nodes", "--json").out)
                            if n["name"] == name)
                # Said at a heartbeat after the one where it learnt it drains.
                return datetime.fromisoformat(node["last_seen"]) > drained and \
                    node["runs_executing"] == 0

            eventually(idle, what=f"{name} drained")
            again()
            assert deck.cli("node", "undrain", name).code == 0
            eventually(lambda name=name: {n["name"]: n["state"] for n in json.loads(
                a.cli("nodes", "--json").out)}.get(name) == "up", what=f"{name} up again")
    finally:
        done.set()
        launcher.join(10)
    assert len(launched) > 10
    for run_id in launched:
        finished = wait_run(a, run_id, lambda r: r["finished_at"], timeout=60)
        assert finished["status"] == "succeeded", finished


def _start_again(deck, name):
    deck.cli("server", "stop")
    deck.process.wait(30)
    _data, deck.process = start_workdeck(deck.data_dir.root.parent, deck.home,
                                         extra=["--node", name], database=deck.database)


def test_postgresql_down_longer_than_a_lease_under_two_nodes_loses_nothing(
        postgres, nodes, ssh_servers, client_key, tmp_path):
    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=2)
    import_runbook(a, tmp_path, """
name = "Paced"
[[steps]]
name = "Tick"
pool = "Web Pool"
script = "for i in $(seq 1 40); do echo tick $i; sleep 0.2; done"
""")
    runs = [launch_on(a, "Paced"), launch_on(b, "Paced")]
    for run in runs:
        eventually(lambda run=run: any(line["text"] == "tick 1"
                                       for line in log_lines(a, run["id"])),
                   what=f"run {run['id']} ticking")
    postgres.stop()
    try:
        for deck in (a, b):
            eventually(lambda deck=deck: "database cannot be reached" in deck.cli(
                "server", "status").out, timeout=30, what="the database gone, as said")
        # Down for longer than a lease: every node's heartbeat is late, and none may take
        # the others' runs over for it.
        time.sleep(2 * LEASE_S)
    finally:
        postgres.start()
    for run in runs:
        done = wait_run(a, run["id"], lambda r: r["finished_at"], timeout=120)
        assert done["status"] == "succeeded", (done, a.log()[-3000:], b.log()[-3000:])
        ticks = [line["text"] for line in log_lines(a, run["id"])
                 if line["text"].startswith("tick ")]
        assert ticks == [f"tick {i}" for i in range(1, 41)]
    assert "was found lost" not in a.log() + b.log()
    assert "took over from node" not in a.log() + b.log()


def test_a_login_profile_keeps_every_node_and_each_ones_certificate(nodes, tmp_path):
    import subprocess
    import sys

    from openssh import free_port

    a, _b, start = nodes
    ports = [free_port(), free_port()]
    e, f = (start(name, extra=("--listen", f"127.0.0.1:{port}"))
            for name, port in zip(("e", "f"), ports, strict=True))
    shown = []
    for deck in (e, f):
        with deck.client() as client:
            shown.append(client.get("/api/server")["tls_fingerprint"])
    assert shown[0] != shown[1]  # each node its own self-signed certificate
    token = viewer_token(a)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}

    def workdeck(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "console.cli", *args], input=stdin,
                              capture_output=True, text=True, env=env, timeout=60)

    urls = ",".join(f"https://127.0.0.1:{port}" for port in ports)
    half = workdeck("login", urls, "--name", "pair", "--fingerprint", shown[0], stdin=token)
    assert half.returncode == 1 and f"presented {shown[1]}" in half.stderr
    done = workdeck("login", urls, "--name", "pair", "--fingerprint", shown[0],
                    "--fingerprint", shown[1], stdin=token)
    assert done.returncode == 0, done.stderr
    assert "as ops: viewer" in done.stdout
    first = workdeck("--server", "pair", "server", "status", "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["node"] == "e", first.stderr
    e.process.send_signal(signal.SIGKILL)
    e.process.wait(10)
    then = workdeck("--server", "pair", "server", "status", "--json")
    assert then.returncode == 0 and json.loads(then.stdout)["node"] == "f", then.stderr


def test_a_followed_log_goes_on_from_the_next_node_where_it_broke_off(
        nodes, ssh_servers, client_key, tmp_path):
    import subprocess
    import sys


    a, b, c, ports = paced_behind_two_nodes(nodes, ssh_servers, client_key, tmp_path)
    token = viewer_token(a)
    run = launch_on(b, "Paced")  # b executes it; c, then d, serve the follower
    follower = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--server",
         ",".join(f"http://127.0.0.1:{port}" for port in ports), "runs", "log",
         str(run["id"]), "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "WORKDECK_TOKEN": token})
    printed: list[str] = []

    def read() -> None:
        for line in follower.stdout:
            printed.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Killed only once the follower has printed from c: killed sooner, it would have
    # gone to d from the start, and there would be nothing to go on from.
    eventually(lambda: any(line.endswith("tick 10\n") for line in printed),
               what="the follower ten ticks in, from c")
    c.process.send_signal(signal.SIGKILL)  # its follower's node goes; the run goes on
    c.process.wait(10)
    (tmp_path / "go").touch()
    err = follower.stderr.read()
    follower.wait(60)
    reader.join(10)
    assert follower.returncode == 0, err
    assert re.search(r"the log stream broke off; going on from line \d+ at "
                     f"http://127.0.0.1:{ports[1]}", err), err
    ticks = [line.split()[-2] + " " + line.split()[-1] for line in printed
             if "tick " in line]
    assert ticks == [f"tick {i}" for i in range(1, 31)]  # each once, in order


def test_a_run_failing_on_one_node_is_told_once_by_the_leader(nodes, ssh_servers,
                                                               client_key, tmp_path):
    from test_notifications import Receiver

    a, b, _start = nodes
    setup_fleet(a, ssh_servers, client_key, count=1)
    import_runbook(a, tmp_path, """
name = "Break"
[[steps]]
name = "Fail"
pool = "Web Pool"
script = "exit 3"
""")
    receiver = Receiver()
    try:
        added = b.cli("notify", "add", "ops", "--url", f"{receiver.url}/ok")
        assert added.code == 0, added.err
        # b executes it and stores the event; the leader (the first live name) posts it.
        run = launch_on(b, "Break")
        assert run["node"] == "b"
        done = wait_run(a, run["id"], lambda r: r["finished_at"])
        assert done["status"] == "failed"
        # Stored as delivered once its POST was answered: a node posting it beside the
        # one that claimed it would have posted by then.
        shown = eventually(lambda: (s := json.loads(a.cli("notify", "show", "ops",
                                                          "--json").out))["last"]
                           and s["last"]["status"] == "delivered" and s,
                           what="the failure told, and its answer stored")
        told = [json.loads(body) for _headers, body in receiver.at("/ok")]
        assert [(t["event"], t["run"]["id"]) for t in told] == [("run-failed", run["id"])], \
            told
        assert [d["status"] for d in shown["deliveries"]] == ["delivered"]
    finally:
        receiver.close()
