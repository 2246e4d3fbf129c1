"""The servers using one store ("nodes"): each registers and heartbeats by the database's
time; `workdeck nodes` shows them; a draining node takes no new runs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import QUIET_POLICY, both_stores
from sqlmodel import select
from test_runs import import_runbook

from backend import nodes
from backend.errors import Conflict
from backend.store.models import Node

pytestmark = both_stores

QUICK = """
name = "Quick"
[[steps]]
name = "Say"
pool = "Default Worker Pool"
script = "echo hello"
"""


def test_a_server_registers_itself_and_a_draining_one_takes_no_new_runs(workdeck, tmp_path):
    [me] = json.loads(workdeck.cli("nodes", "--json").out)
    assert (me["state"], me["this"], me["draining"]) == ("up", True, False)
    assert me["address"].startswith("unix:") and me["pid"] == workdeck.process.pid
    assert me["seen_s_ago"] < nodes.LEASE_S
    listed = workdeck.cli("nodes").out
    assert listed.splitlines()[0].split()[:3] == ["NODE", "STATE", "SEEN"]
    assert f"{me['name']} *" in listed and "up" in listed
    with workdeck.client() as client:
        assert client.get("/api/server")["node"] == me["name"]
        client.put("/api/settings", {"builtin_worker": True})
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, QUICK)

    drained = workdeck.cli("node", "drain", me["name"])
    assert drained.code == 0 and "takes no new runs" in drained.out
    refused = workdeck.cli("run", "Quick", "--env", "Test")
    assert refused.code == 1
    assert f"node {me['name']}) is draining" in refused.err and "undrain" in refused.err
    assert "draining" in workdeck.cli("nodes").out
    assert "node.drain" in workdeck.cli("audit").out
    missing = workdeck.cli("node", "drain", "no-such-node")
    assert missing.code == 1 and "No node is named 'no-such-node'" in missing.err

    assert workdeck.cli("node", "undrain", me["name"]).code == 0
    launched = workdeck.cli("run", "Quick", "--env", "Test", "--follow")
    assert launched.code == 0, launched.err


def test_a_node_silent_past_its_lease_is_lost_and_one_that_stopped_says_so(make_store):
    store = make_store()
    first = nodes.Registry(store, "ops-1", "unix:/srv/a.sock")
    first.register()
    second = nodes.Registry(store, "ops-2", "10.0.0.2:8443")
    second.register()
    with store.write() as session:
        row = session.exec(select(Node).where(Node.name == "ops-2")).one()
        row.heartbeat_at -= timedelta(seconds=nodes.LEASE_S + 5)
        row.runs_executing = 3
        session.add(row)
    shown = {node["name"]: node for node in first.list()}
    assert shown["ops-1"]["state"] == "up" and shown["ops-1"]["this"]
    assert shown["ops-2"]["state"] == "lost" and shown["ops-2"]["runs_executing"] == 0
    assert shown["ops-2"]["seen_s_ago"] >= nodes.LEASE_S
    second.heartbeat()  # it comes back
    assert {n["name"]: n["state"] for n in first.list()}["ops-2"] == "up"
    second.stopped()
    assert {n["name"]: n["state"] for n in first.list()}["ops-2"] == "stopped"


def test_a_name_alive_elsewhere_is_refused(make_store):
    store = make_store()
    nodes.Registry(store, "ops-1").register()
    with store.write() as session:
        row = session.exec(select(Node).where(Node.name == "ops-1")).one()
        row.pid = 1  # another process alive on this host (init) holds the name
        session.add(row)
    with pytest.raises(Conflict, match=r"A node named ops-1 is alive .*--node NAME"):
        nodes.Registry(store, "ops-1").register()


def test_a_node_killed_on_this_host_is_taken_over_at_once(make_store):
    store = make_store()
    nodes.Registry(store, "ops-1").register()
    with store.write() as session:
        row = session.exec(select(Node).where(Node.name == "ops-1")).one()
        row.pid = 2**22 + 7  # no such process: it was killed (kill -9 leaves no word)
        session.add(row)
    nodes.Registry(store, "ops-1").register()  # its lease has not run out: no matter


def test_rendezvous_spreads_the_fleet_evenly_and_moves_only_what_must_move():
    workers = [f"p-web-worker-{i:04d}" for i in range(3000)]
    three = {w: nodes.owner(w, ["ops-1", "ops-2", "ops-3"]) for w in workers}
    counts = {n: list(three.values()).count(n) for n in ("ops-1", "ops-2", "ops-3")}
    assert all(850 <= count <= 1150 for count in counts.values()), counts
    # ops-3 leaves: only its workers move, spread over the two left.
    two = {w: nodes.owner(w, ["ops-1", "ops-2"]) for w in workers}
    moved = {w for w in workers if two[w] != three[w]}
    assert moved == {w for w in workers if three[w] == "ops-3"}
    # ops-4 joins: only workers going to it move, about a quarter.
    four = {w: nodes.owner(w, ["ops-1", "ops-2", "ops-3", "ops-4"]) for w in workers}
    moved = {w for w in workers if four[w] != three[w]}
    assert all(four[w] == "ops-4" for w in moved) and 600 <= len(moved) <= 900


def test_the_checks_are_shared_with_a_live_node_and_taken_over_when_it_goes(workdeck):
    import threading
    import time

    from waiting import eventually

    from backend.store.db import Store

    [me] = json.loads(workdeck.cli("nodes", "--json").out)
    names = [f"t-share-worker-{i:02d}" for i in range(12)]

    def checked_at() -> dict[str, str | None]:
        return {w["name"]: w["checked_at"] for w in json.loads(
            workdeck.cli("worker", "list", "--json").out) if w["name"] in names}

    store = Store(workdeck.database or workdeck.data_dir.database)
    other = nodes.Registry(store, "zz-other")  # a second node on the same store
    other.register()
    stop = threading.Event()

    def heartbeats() -> None:  # every second, until it "dies"
        other.heartbeat()
        while not stop.wait(1):
            other.heartbeat()

    thread = threading.Thread(target=heartbeats, daemon=True)
    thread.start()
    try:
        mine = {n for n in names if nodes.owner(n, [me["name"], "zz-other"]) == me["name"]}
        assert mine and mine != set(names)  # both have a share
        eventually(lambda: {n["name"]: n["state"] for n in json.loads(
            workdeck.cli("nodes", "--json").out)} == {me["name"]: "up", "zz-other": "up"},
            what="both nodes up")
        eventually(lambda: any("live nodes are" in line and "zz-other" in line
                               for line in workdeck.log().splitlines()),
                   what="this node's heartbeat seeing the other one")
        for name in names:  # unreachable: a check says so at once
            assert workdeck.cli("worker", "add", name, "--host", "127.0.0.1",
                                "--port", "1").code == 0
        with workdeck.client() as client:  # checked every 2 s from now on
            client.put("/api/policy", {**QUIET_POLICY, "interval_s": 2})
        first = checked_at()

        def moved_on() -> set[str]:
            now = checked_at()
            return {name for name in names if now[name] != first[name]}

        def share_checked() -> bool:
            found = moved_on()
            assert found == mine, (sorted(found), sorted(mine))
            return True

        eventually(share_checked, timeout=20, what="this node's share checked again")
        # Twice more, and still none of the other node's share.
        second = checked_at()
        eventually(lambda: all(checked_at()[name] != second[name] for name in mine),
                   timeout=20, what="this node's share checked once more")
        assert moved_on() == mine
        eventually(lambda: next(n for n in json.loads(workdeck.cli("nodes", "--json").out)
                                if n["this"])["workers_checked"] == len(mine),
                   timeout=15, what="the count of workers this node checks")
    finally:
        stop.set()
        thread.join()
        store.close()
    # The other node dies (no word): its share is checked here within 30 s.
    died = time.monotonic()
    before = checked_at()
    eventually(lambda: all(checked_at()[name] != before[name] for name in names),
               timeout=40, what="the dead node's share checked here")
    assert time.monotonic() - died < 30 + 5
    assert {n["name"]: n["state"] for n in json.loads(
        workdeck.cli("nodes", "--json").out)}["zz-other"] == "lost"


def test_a_node_name_that_is_no_name_is_refused_with_a_sentence(tmp_path):
    import subprocess
    import sys

    refused = subprocess.run(
        [sys.executable, "-m", "console.cli", "--data-dir", str(tmp_path / "deck"), "server",
         "--node", "two words"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "workdeck: 'two words' is not a node name: one word of 64 characters at most, "
        "like ops-1.")
    assert "Traceback" not in refused.stderr


def test_the_heartbeat_and_the_lease_are_settings_a_node_takes_at_its_next_heartbeat(
        workdeck):
    shown = workdeck.cli("settings").out
    assert "server nodes:        heartbeat every 5 s, lost after 15 s" in shown
    refused = workdeck.cli("settings", "--node-heartbeat", "5", "--node-lease", "6")
    assert refused.code == 1
    assert "A node lease of 6 s is less than two heartbeats of 5 s" in refused.err
    assert workdeck.cli("settings", "--node-lease", "12").code == 0
    with workdeck.client() as client:
        settings = client.get("/api/settings")
    assert (settings["node_heartbeat_s"], settings["node_lease_s"]) == (5, 12)
    assert "heartbeat every 5 s, lost after 12 s" in workdeck.cli("audit").out
