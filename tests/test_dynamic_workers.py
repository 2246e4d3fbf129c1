"""Dynamic workers, made by a real provisioner: each is a network namespace of its own with
its own OpenSSH sshd and host key, at a new address each time (netns_provisioner.sh).

Needs root, iproute2 and sshd: on CI (.ci/run installs them) a missing part fails these
tests rather than skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ON_CI, QUIET_POLICY
from test_faults import need_root
from test_runs import import_runbook, launch, log_lines, wait_run
from waiting import eventually

SCRIPT = Path(__file__).with_name("netns_provisioner.sh")
POOL = "Dynamic Web Worker Pool"


class Provisioner:
    def __init__(self, state: Path) -> None:
        self.state = state

    def command(self, action: str) -> str:
        return f"sh {SCRIPT} {self.state} {action}"

    def mode(self, value: str) -> None:
        (self.state / "mode").write_text(value)

    def made(self) -> list[tuple[str, str]]:
        """(name, address) of every worker made, in order."""
        path = self.state / "made"
        return [tuple(line.split()) for line in path.read_text().splitlines()] \
            if path.exists() else []

    def destroyed(self) -> list[str]:
        path = self.state / "destroyed"
        return path.read_text().split() if path.exists() else []

    def alive(self) -> list[str]:
        folder = self.state / "workers"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def provisioner(tmp_path):
    need_root("a provisioner of network namespaces")
    for tool in ("ip", "ssh-keygen", "ssh-keyscan", "flock"):
        if shutil.which(tool) is None:
            message = f"{tool} is needed for the dynamic worker tests"
            if ON_CI:
                pytest.fail(message)
            pytest.skip(message)
    state = tmp_path / "provisioner"
    state.mkdir()
    (state / "tag").write_text(str(os.getpid() % 16))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(state / "client_key")], check=True, stdin=subprocess.DEVNULL)
    made = Provisioner(state)
    try:
        yield made
    finally:
        made.mode("")
        for name in made.alive():
            subprocess.run(["sh", str(SCRIPT), str(state), "destroy", name],
                           capture_output=True, timeout=30)


def provision(workdeck, provisioner, *options: str) -> None:
    if workdeck.cli("pool", "show", POOL).code != 0:
        assert workdeck.cli("pool", "add", POOL).code == 0
    done = workdeck.cli("pool", "provision", POOL, "--create", provisioner.command("create"),
                        "--destroy", provisioner.command("destroy"), *options)
    assert done.code == 0, done.err


def pool(workdeck) -> dict:
    with workdeck.client() as client:
        return client.get(f"/api/pools/{POOL}")


def dynamic_workers(workdeck) -> list[dict]:
    with workdeck.client() as client:
        return [w for w in client.get("/api/workers") if w["dynamic"]]


RUNBOOK = f"""
name = "Build"
[[steps]]
name = "Compile"
pool = "{POOL}"
script = '''
echo "compiled on $WORKDECK_WORKER at $(ip -4 -o addr show scope global | awk '{{print $4}}')"
sleep ${{nap:-0}}
'''
[variables]
nap = "0"
"""


def test_a_waiting_step_makes_a_worker_that_runs_it_and_goes_when_idle(workdeck, provisioner,
                                                                       tmp_path):
    # At most one alive: what follows counts the lives one by one (on a loaded machine two
    # could otherwise be made for one step; twenty steps against --max are tested below).
    provision(workdeck, provisioner, "--max", "1", "--wait", "0", "--idle", "2s",
              "--timeout", "30s")
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, RUNBOOK)
    # The pool has no worker at all: the step waits for one to be made, it does not fail.
    run = launch(workdeck, "Build")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=60)
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    [(name, address)] = provisioner.made()
    assert done["steps"][0]["worker"] == name
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert f"compiled on {name} at {address}/24" in texts  # in its own namespace
    # Its host key was pinned from the provisioner's word, and it says where it came from.
    with workdeck.client() as client:
        worker = client.get(f"/api/workers/{name}")
    assert worker["dynamic"] and worker["host"] == address and worker["host_key"]
    listed = workdeck.cli("worker", "list").out
    assert f"{name} (dynamic)" in listed
    # Idle for two seconds: drained, destroyed, gone from the fleet.
    eventually(lambda: provisioner.destroyed() == [name], timeout=30,
               what="the idle dynamic worker destroyed")
    eventually(lambda: dynamic_workers(workdeck) == [], what="the worker record removed")
    assert provisioner.alive() == []
    shown = pool(workdeck)["provisioner"]
    assert shown["state"] == "ready" and shown["workers"] == 0
    assert shown["note"].startswith(f"destroyed {name} (idle for ")
    with workdeck.client() as client:
        audit = client.get("/api/audit")
    done_by = {(e["action"], e["target"]): e["actor"] for e in audit}
    assert done_by["worker.add", name] == f"provisioner of {POOL}"
    assert done_by["worker.remove", name] == f"provisioner of {POOL}"
    # The next life is a new worker, at a new address, with a key of its own.
    again = launch(workdeck, "Build")
    done = wait_run(workdeck, again["id"], lambda r: r["finished_at"], timeout=60)
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    (first, first_address), (second, second_address) = provisioner.made()
    assert second != first and second_address != first_address
    assert done["steps"][0]["worker"] == second
    shown = workdeck.cli("pool", "show", POOL).out
    assert "Dynamic workers: 1 of at most 1" in shown and f"{second} (dynamic)" in shown


def test_twenty_waiting_steps_never_make_more_than_max(workdeck, provisioner, tmp_path):
    provision(workdeck, provisioner, "--max", "3", "--wait", "0", "--idle", "10m",
              "--per-minute", "20", "--timeout", "30s")
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, RUNBOOK)
    runs = [launch(workdeck, "Build", variables={"nap": "1"}) for _ in range(20)]
    most = 0

    def all_done() -> bool:
        nonlocal most
        most = max(most, len(dynamic_workers(workdeck)), len(provisioner.alive()))
        with workdeck.client() as client:
            return all(client.get(f"/api/runs/{run['id']}")["finished_at"] for run in runs)

    eventually(all_done, timeout=120, what="twenty runs finished")
    assert most == 3
    assert len(provisioner.made()) == 3  # none destroyed, none made twice
    with workdeck.client() as client:
        finished = [client.get(f"/api/runs/{run['id']}") for run in runs]
    assert {r["status"] for r in finished} == {"succeeded"}
    assert {r["steps"][0]["worker"] for r in finished} == {n for n, _ in provisioner.made()}
    assert pool(workdeck)["provisioner"]["workers"] == 3


def test_a_failing_and_a_hanging_provisioner_are_reported_and_the_queue_goes_on(
        workdeck, provisioner, tmp_path):
    provisioner.mode("fail")
    provision(workdeck, provisioner, "--max", "1", "--wait", "0", "--timeout", "2s")
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, RUNBOOK)
    run = launch(workdeck, "Build")
    shown = eventually(lambda: (p := pool(workdeck)["provisioner"])["state"] == "failing"
                       and p, what="the failure reported")
    assert "its create command exited with status 3: no capacity left in the test region" \
        in shown["note"] and "next attempt in 5 s" in shown["note"]
    assert "failing" in workdeck.cli("pool", "list").out
    with workdeck.client() as client:
        assert client.get(f"/api/runs/{run['id']}")["steps"][0]["status"] == "queued"
        assert any(e["action"] == "provisioner.fail" for e in client.get("/api/audit"))
    # It hangs next: stopped after its time limit, with everything it started.
    provisioner.mode("hang")
    shown = eventually(lambda: "did not finish" in (p := pool(workdeck)["provisioner"])["note"]
                       and p, timeout=40, what="the hang reported")
    assert "its create command did not finish within 2 s and was stopped" in shown["note"]
    leftover = subprocess.run(["pgrep", "-f", str(provisioner.state)], capture_output=True,
                              text=True)
    assert leftover.stdout == "", "the hung provisioner outlived its time limit"
    # Mended: the step that waited all along runs on the next worker made.
    provisioner.mode("")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=90)
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    assert pool(workdeck)["provisioner"]["note"].startswith("made ")


def test_a_host_key_other_than_the_provisioners_word_is_refused(workdeck, provisioner,
                                                                tmp_path):
    provisioner.mode("lie")
    provision(workdeck, provisioner, "--max", "1", "--wait", "0", "--timeout", "20s")
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, RUNBOOK)
    run = launch(workdeck, "Build")
    eventually(lambda: len(provisioner.destroyed()) == 1, timeout=40,
               what="the worker with the wrong key destroyed")
    [(name, _address)] = provisioner.made()
    assert provisioner.destroyed() == [name]
    assert name.startswith("dynamic-web-") and len(name) == len("dynamic-web-") + 5
    note = eventually(lambda: (n := pool(workdeck)["provisioner"]["note"]).startswith(
        "destroyed") and n, what="the destruction noted")
    assert note.startswith(f"destroyed {name} (its first check found it unavailable: ")
    assert "host key changed" in note.lower(), note
    with workdeck.client() as client:
        # It never ran anything: the step still waits, and the worker is gone.
        assert client.get(f"/api/runs/{run['id']}")["steps"][0]["status"] == "queued"
        [failed] = [e for e in client.get("/api/audit") if e["action"] == "provisioner.fail"]
    assert failed["target"] == name and f"{name} was made at " in failed["detail"]
    assert dynamic_workers(workdeck) == []


def test_the_demos_build_pool_makes_workers_that_end_with_the_demo(tmp_path):
    """The demo's provisioner: each worker an SSH server process of its own; none is left
    once the demo server is gone, however it went."""
    import signal

    from conftest import start_workdeck

    from console.client import Client, Target

    home = tmp_path / "home"
    home.mkdir()
    data_dir, process = start_workdeck(tmp_path, home, ["--demo-fleet"])

    def serving() -> list[str]:
        found = subprocess.run(["pgrep", "-f", f"backend.demo.provision {data_dir.root}"],
                               capture_output=True, text=True)
        return found.stdout.split()

    try:
        with Client(Target(data_dir)) as client:
            eventually(lambda: any(r["name"] == "Build release"
                                   for r in client.get("/api/runbooks")),
                       what="the demo registered")
            # The machine's own load must not turn the demo's workers to "warning" (a
            # worker with a warning takes no step: the provisioner gives it up). Set once
            # the demo is in place: set before, the demo's own policy replaced it.
            client.put("/api/policy", client.get("/api/policy") | QUIET_POLICY)
            runs = [client.post("/api/runs", {"runbook": "Build release",
                                              "environment": "Development",
                                              "variables": {"seconds": "2"}})
                    for _ in range(3)]

            def finished() -> list[dict]:
                shown = [client.get(f"/api/runs/{run['id']}") for run in runs]
                # Said when it fails: each step's state and what the provisioner did last.
                assert all(r["finished_at"] for r in shown), (
                    [(r["steps"][0]["status"], r["steps"][0]["reason"]) for r in shown],
                    [p.get("provisioner") for p in client.get("/api/pools")
                     if p.get("provisioner")])
                return shown

            # Long: on a loaded machine each worker is a Python process slow to start.
            done = eventually(finished, timeout=180, what="three builds finished")
            assert {r["status"] for r in done} == {"succeeded"}, done
            made = {w["name"] for w in client.get("/api/workers") if w["dynamic"]}
            # Three steps, two slots a worker: two workers made (a third when the machine
            # is so loaded that the demo's policy finds one in "warning" and it is given
            # up), never more than the pool's maximum of three.
            assert 2 <= len(made) <= 3
            assert {r["steps"][0]["worker"] for r in done} <= made
            assert all(name.startswith("local-build-") for name in made)
        assert 2 <= len(serving()) <= 3
    finally:
        process.send_signal(signal.SIGKILL)  # the demo console's end, at its worst
        process.wait(10)
    eventually(lambda: serving() == [], timeout=20,
               what="the demo's dynamic workers gone with it")


def test_min_are_kept_warm_and_one_that_dies_is_replaced(workdeck, provisioner):
    provision(workdeck, provisioner, "--min", "1", "--max", "1", "--idle", "2s",
              "--timeout", "30s")
    # Nothing waits: the warm one is made all the same, and kept however idle.
    eventually(lambda: len(dynamic_workers(workdeck)) == 1
               and dynamic_workers(workdeck)[0]["status"] == "healthy", timeout=30,
               what="a worker kept warm")
    [(first, _address)] = provisioner.made()
    import time

    # Nothing to wait on here: what is checked is that nothing happens for longer than
    # --idle (a warm worker is never destroyed for being idle).
    time.sleep(3)
    assert provisioner.destroyed() == []
    # Its machine dies: checked, found unavailable, destroyed and made again.
    namespace = (provisioner.state / "workers" / first / "netns").read_text().split()[0]
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                          text=True).stdout.split()
    subprocess.run(["kill", "-9", *pids], check=True)
    workdeck.cli("check", "--worker", first)
    eventually(lambda: provisioner.destroyed() == [first], timeout=30,
               what="the dead worker destroyed")
    eventually(lambda: [w["status"] for w in dynamic_workers(workdeck)] == ["healthy"]
               and len(provisioner.made()) == 2, timeout=30, what="a new one made")
    with workdeck.client() as client:
        removed = [e["detail"] for e in client.get("/api/audit")
                   if e["action"] == "worker.remove" and e["target"] == first]
    assert removed and removed[0].startswith("destroyed: unavailable for "), removed
    # An operator takes one out: removing it by hand is refused (the provisioner destroys
    # what it made); drained, it is destroyed at once, warm or not, and made again.
    [second] = [w["name"] for w in dynamic_workers(workdeck)]
    refused = workdeck.cli("worker", "remove", second)
    assert refused.code != 0 and "drain it" in refused.err, refused.err
    assert workdeck.cli("worker", "drain", second).code == 0
    eventually(lambda: provisioner.destroyed() == [first, second], timeout=30,
               what="the drained worker destroyed")
    eventually(lambda: len(provisioner.made()) == 3, timeout=30, what="a third made")
