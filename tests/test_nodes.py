"""The servers using one store ("nodes"): each registers and heartbeats by the database's
time; `workdeck nodes` shows them; a draining node takes no new runs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import both_stores
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
