"""The fault matrix: each test is one row. Real parts throughout.

| fault | what the user sees | what is checked to be kept |
|---|---|---|
| a second `workdeck server` on a data dir served over TCP, a step running | one sentence naming the running server (pid, address); `runs list` reaches the first server | the run stays running, its slot stays taken, no second server starts |
| `kill -9` of the server mid-step (built-in worker; OpenSSH as root and as an ordinary account) | the run `interrupted` after restart | the step's processes are killed after the restart, its slot held until they are, every line stored before the kill |
| the data directory fills up during a 1,000,000-line step, then is freed | `server status` and the top bar say the data directory is full; the step fails with that reason | the server stays up, the lines it took are stored in order with no gap, runs work again once space is freed |
| the same, the disk left full, then 12 MB freed while far more lines are held | the run ends `failed` (API, `runs list`, `runs show`, console) while the disk is still full | its steps' and its own outcome and its slot are stored before the held lines; every line in the end, with no gap |
| PostgreSQL stopped in the middle of a 100,000-line step, then started again | `server status` and the top bar say the database cannot be reached, then nothing | the run ends `succeeded`; every line stored once, in order; the server carries on by itself |
| a worker's link goes down mid-step (network namespace) | the step `lost`, the worker `orphan: 1` with a reason | the slot stays taken until the link is back and the step's processes are killed |
| a worker's packets silently dropped mid-step (`nft` in its namespace), then healed | the step `lost` after the keepalives, then the orphan killed | as above |
| a worker with running steps removed | one sentence: drain it first | the worker, its leases and its connection |
| a custom health check that reads stdin or hangs | healthy (EOF on stdin) / unhealthy "timed out", every time | the next check still works; no stray `sleep` on the worker |
| `@revoked` and `@cert-authority` in known_hosts, real OpenSSH host certificates | REVOKED refused; a certified host healthy and never pinned; another CA's certificate refused | nothing pinned that should not be |
| `worker trust` without `--fingerprint`, nobody at the terminal | the presented fingerprint and how to trust it | nothing pinned |
| oversized request bodies (declared and streamed), nested YAML aliases | 413 with a sentence; a sentence naming the bound | the server answers on |
| `--data-dir` pointed at a home directory | one sentence | the directory's mode and files |
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest
from conftest import need_root, short_tmp, start_workdeck, stop_workdeck
from openssh import _generate_key
from test_runs import import_runbook, launch, log_lines, setup_fleet, wait_run
from waiting import eventually

from wire.datadir import DataDir


def processes(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def stamp() -> str:
    return f"{time.time_ns() % 10**9:09d}"


def worker(workdeck, name):
    with workdeck.client() as client:
        return client.get(f"/api/workers/{name}")


def numbered(lines: list[dict]) -> list[int]:
    """The numbers of the "line N" lines, in order. A line cut short by a kill ("line "
    with no number) is left out: a line split anywhere else would show as a gap."""
    words = (line["text"].split() for line in lines
             if line["stream"] == "stdout" and line["text"].startswith("line "))
    return [int(parts[1]) for parts in words if len(parts) > 1]


# ---------------------------------------------------------------- one server per data dir


def test_a_second_server_on_the_same_data_dir_refuses_to_start(workdeck, ssh_servers,
                                                              client_key, tmp_path):
    workdeck.process.terminate()
    workdeck.process.wait(10)
    from openssh import free_port

    port = free_port()
    _data, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home,
                                             ["--listen", f"127.0.0.1:{port}", "--plain-http"])
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Long"
[[steps]]
name = "Hold"
pool = "Web Pool"
script = "echo holding; sleep 60"
""")
    run = launch(workdeck, "Long")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    second = subprocess.run(
        [sys.executable, "-m", "console.cli", "--data-dir", str(workdeck.data_dir.root),
         "server"], capture_output=True, text=True, timeout=30,
        env={**os.environ, "HOME": str(workdeck.home)})
    assert second.returncode == 1
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert f"pid {workdeck.process.pid}" in second.stderr
    assert f"127.0.0.1:{port}" in second.stderr
    # Any command without --server reaches the running server, whatever it listens on,
    # and starting one (what a console does when none answers) starts none.
    from console.client import start_server

    start_server(workdeck.target)
    listed = workdeck.cli("runs", "list", "--json")
    assert json.loads(listed.out)[0]["status"] == "running"
    assert json.loads(workdeck.data_dir.server_file.read_text())["pid"] == workdeck.process.pid
    with workdeck.client() as client:
        assert client.get("/api/pools/Web Pool")["leased"] == 1
        assert client.get(f"/api/runs/{run['id']}")["status"] == "running"
    status = workdeck.cli("server", "status")
    assert f"listening on http://127.0.0.1:{port}" in status.out
    workdeck.cli("runs", "cancel", str(run["id"]))


# ---------------------------------------------------------------- kill -9 mid-step


LONG_STEP = """
name = "Long"
[[steps]]
name = "Count then wait"
pool = "{pool}"
script = '''
for i in $(seq 1 20); do echo "line $i"; sleep 0.05; done
sleep 8{marker}1 &
( sleep 8{marker}2; echo never ) &
sleep 8{marker}3
'''
"""


def kill_and_restart(workdeck, run_id, marker, worker_name):
    """kill -9 the server mid-step, restart it, see the orphan killed; return the run."""
    wait_run(workdeck, run_id, lambda r: r["steps"][0]["status"] == "running")
    eventually(lambda: len(processes(f"sleep 8{marker}")) == 3, what="the step's processes")
    stored = eventually(lambda: numbered(log_lines(workdeck, run_id)) == list(range(1, 21))
                        and 20, what="the twenty lines stored")
    workdeck.process.send_signal(signal.SIGKILL)
    workdeck.process.wait(10)
    assert len(processes(f"sleep 8{marker}")) == 3  # a crash leaves them running
    _data, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home)
    seen = []

    def settled():
        alive = len(processes(f"sleep 8{marker}"))
        held = worker(workdeck, worker_name)["leased"]
        seen.append((alive, held))
        return alive == 0 and held == 0

    eventually(settled, timeout=30, interval=0.02, what="the orphaned step killed")
    # The slot was never free while a process of the step still ran.
    assert not [state for state in seen if state[0] and not state[1]], seen
    done = wait_run(workdeck, run_id, lambda r: r["finished_at"])
    assert numbered(log_lines(workdeck, run_id))[:stored] == list(range(1, stored + 1))
    return done


def test_kill_9_mid_step_on_an_ssh_worker_leaves_no_process(workdeck, ssh_servers, client_key,
                                                            tmp_path):
    # The in-process SSH server keeps the step's processes when the connection drops, as
    # a real host without a terminal does.
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    marker = stamp()
    import_runbook(workdeck, tmp_path, LONG_STEP.format(pool="Web Pool", marker=marker))
    run = launch(workdeck, "Long")
    done = kill_and_restart(workdeck, run["id"], marker, "t-web-local-worker-01")
    assert done["status"] == "interrupted" and done["steps"][0]["status"] == "interrupted"


def test_kill_9_mid_step_on_the_built_in_worker_leaves_no_process(workdeck, tmp_path):
    workdeck.cli("settings", "--builtin-worker", "on")
    workdeck.cli("env", "add", "Test")
    marker = stamp()
    import_runbook(workdeck, tmp_path,
                   LONG_STEP.format(pool="Default Worker Pool", marker=marker))
    assert workdeck.cli("check").code == 0
    run = launch(workdeck, "Long")
    done = kill_and_restart(workdeck, run["id"], marker, "built-in-worker")
    assert done["status"] == "interrupted"


@pytest.mark.openssh
@pytest.mark.parametrize("account", ["root-or-self", "unprivileged"])
def test_kill_9_mid_step_on_openssh_leaves_no_process(workdeck, openssh, tmp_path, account,
                                                      unprivileged_user):
    from test_openssh_runs import add_worker

    sshd = openssh()
    add_worker(workdeck, sshd, sshd.user if account == "root-or-self" else unprivileged_user)
    marker = stamp()
    import_runbook(workdeck, tmp_path, LONG_STEP.format(pool="Web Pool", marker=marker))
    run = launch(workdeck, "Long")
    done = kill_and_restart(workdeck, run["id"], marker, "t-ssh-local-worker-01")
    assert done["status"] == "interrupted"


# ---------------------------------------------------------------- the disk fills up


FLOOD = """
name = "Flood"
[[steps]]
name = "A million lines"
pool = "Default Worker Pool"
script = "awk 'BEGIN { for (i = 1; i <= 1000000; i++) printf \\"line %d padding-padding-padding-padding-padding\\\\n\\", i }'"

[[steps]]
name = "Cleanup"
pool = "Default Worker Pool"
condition = "always"
script = "echo cleanup"
"""


FLOOD_ALONE = FLOOD.split("\n[[steps]]\nname = \"Cleanup\"")[0]  # no cleanup step


@pytest.fixture
def small_disk():
    need_root("mounting a tmpfs")
    root = short_tmp("wd-full-")
    mount = root / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def full_disk_deck(small_disk, tmp_path, runbook: str):  # type: ignore[no-untyped-def]
    """A server whose data directory is on `small_disk`, with `runbook` imported and the
    disk filled but for about 15 MB (a flood's 60 MB of lines cannot fit): (deck,
    ballast), the ballast being the file to shrink or remove to free space."""
    from conftest import QUIET_POLICY, Workdeck

    home = small_disk.parent / "home"
    (home / ".ssh").mkdir(parents=True)
    data_dir, process = start_workdeck(small_disk, home)
    deck = Workdeck(data_dir, home, process)
    try:
        with deck.client() as client:
            client.put("/api/policy", QUIET_POLICY)
        deck.cli("env", "add", "Test")
        import_runbook(deck, tmp_path, runbook)
        assert deck.cli("check").code == 0  # the built-in worker, healthy
        ballast = small_disk / "ballast"
        left = shutil.disk_usage(small_disk).free - 15 * 2**20
        with open(ballast, "wb") as out:
            while left > 0:
                left -= out.write(b"\0" * min(left, 2**24))
        yield deck, ballast
    finally:
        slow = stop_workdeck(process, data_dir)
    assert not slow, slow


def test_a_full_data_directory_is_survived(small_disk, tmp_path):
    with full_disk_deck(small_disk, tmp_path, FLOOD) as (deck, ballast):
        run = launch(deck, "Flood")
        eventually(lambda: "data directory is full" in deck.cli("server", "status").out,
                   timeout=60, what="server status saying the disk is full")
        with deck.client() as client:
            assert client.get("/api/server")["store_fault"] == "the data directory is full"
        # The step stops at the bound of what may be held, its processes killed.
        eventually(lambda: not processes("i <= 1000000"), timeout=120, what="the flood killed")
        assert deck.process.poll() is None  # the server stays up
        ballast.unlink()
        done = wait_run(deck, run["id"], lambda r: r["finished_at"], timeout=120)
        assert done["status"] == "failed"
        assert "data directory is full" in done["steps"][0]["reason"]
        assert done["steps"][1]["status"] == "succeeded"  # runs work again
        lines = numbered(log_lines(deck, run["id"]))
        # No gap, no line twice; the last may be the part of one the kill cut short.
        assert len(lines) > 100_000 and lines[:-1] == list(range(1, len(lines)))
        assert str(len(lines)).startswith(str(lines[-1]))
        with deck.client() as client:
            eventually(lambda: client.get("/api/server")["store_fault"] is None,
                       what="the fault cleared")


def stored_run(data_dir: DataDir, run_id: int) -> tuple[str, str | None]:
    """The run's status and end as the store has them (not as the server shows them)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{data_dir.database}?mode=ro",
                                            uri=True, timeout=10)) as db:
        return db.execute("SELECT status, finished_at FROM run WHERE id = ?",
                          (run_id,)).fetchone()


def test_a_runs_outcome_is_stored_before_its_held_lines_when_space_comes_back(
        small_disk, tmp_path):
    with full_disk_deck(small_disk, tmp_path, FLOOD_ALONE) as (deck, ballast):
        run = launch(deck, "Flood")
        # The step is stopped at the bound of what may be held, its processes killed.
        eventually(lambda: "data directory is full" in deck.cli("server", "status").out,
                   timeout=60, what="server status saying the disk is full")
        eventually(lambda: not processes("i <= 1000000"), timeout=120, what="the flood killed")
        # The outcome is shown while the disk stays full, before the store has it.
        shown = wait_run(deck, run["id"], lambda r: r["finished_at"], timeout=60)
        assert (shown["status"], shown["reason"]) == ("failed", "a step failed")
        assert "data directory is full" in shown["steps"][0]["reason"]
        assert deck.cli("runs", "list").out.splitlines()[1].split()[3] == "failed"
        # 12 MB freed, far less than the lines held: the step's and the run's outcome and
        # the slot given back take it first; the run ends, the lines wait on.
        with open(ballast, "r+b") as out:
            out.truncate(ballast.stat().st_size - 12 * 2**20)
        eventually(lambda: stored_run(deck.data_dir, run["id"])[0] == "failed", timeout=60,
                   what="the outcome stored")
        shown = wait_run(deck, run["id"], lambda r: r["finished_at"])
        assert shown["reason"] == "a step failed"
        assert "data directory is full" in shown["steps"][0]["reason"]
        said = deck.cli("runs", "show", str(run["id"])).out
        assert said.startswith(f"run {run['id']}: Flood on Test, failed (a step failed)")
        with deck.client() as client:
            assert client.get("/api/pools/Default Worker Pool")["leased"] == 0
        ballast.unlink()
        # Every line reaches the store in the end, and a reader (not following) reads them
        # all, up to the step's end said last: it waits for the log to close.
        read = log_lines(deck, run["id"])
        lines = numbered(read)
        assert len(lines) > 100_000 and lines[:-1] == list(range(1, len(lines)))
        assert read[-1]["text"].startswith("step 1 failed"), read[-1]


# ---------------------------------------------------------------- a worker in a namespace


@pytest.fixture
def netns_host():
    """A host of its own: a network namespace joined to this one by a veth pair."""
    need_root("a network namespace")
    if shutil.which("ip") is None:
        pytest.fail("iproute2 (ip) is needed for the network namespace tests")
    index = os.getpid() % 200 + 20
    name, outer, inner = f"wd-ns{index}", f"wd-h{index}", f"wd-n{index}"
    host_ip, worker_ip = f"10.231.{index}.1", f"10.231.{index}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", outer], capture_output=True)
    ip("netns", "add", name)
    ip("link", "add", outer, "type", "veth", "peer", "name", inner)
    ip("link", "set", inner, "netns", name)
    ip("addr", "add", f"{host_ip}/24", "dev", outer)
    ip("link", "set", outer, "up")
    ip("netns", "exec", name, "ip", "addr", "add", f"{worker_ip}/24", "dev", inner)
    ip("netns", "exec", name, "ip", "link", "set", inner, "up")
    ip("netns", "exec", name, "ip", "link", "set", "lo", "up")

    class Host:
        namespace, address, link = name, worker_ip, outer

        def link_down(self) -> None:
            ip("link", "set", outer, "down")

        def link_up(self) -> None:
            ip("link", "set", outer, "up")

        def drop_everything(self) -> None:
            ip("netns", "exec", name, "nft", "add", "table", "inet", "wdfault")
            ip("netns", "exec", name, "nft", "add", "chain", "inet", "wdfault", "input",
               "{ type filter hook input priority 0; policy drop; }")

        def heal(self) -> None:
            ip("netns", "exec", name, "nft", "delete", "table", "inet", "wdfault")

    try:
        yield Host()
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def partitioned_step(workdeck, openssh, netns_host, tmp_path, cut, heal):
    if shutil.which("nft") is None:
        pytest.fail("nftables (nft) is needed for the network fault tests")
    sshd = openssh(host=netns_host.address, netns=netns_host.namespace)
    workdeck.cli("worker", "add", "t-ns-remote-worker-01", "--host", sshd.host, "--port",
                 str(sshd.port), "--key-path", str(sshd.client_key), "--pool", "Web Pool",
                 "--trust-host-key")
    assert workdeck.cli("check").code == 0
    workdeck.cli("env", "add", "Test")
    marker = stamp()
    import_runbook(workdeck, tmp_path, f"""
name = "Far"
[[steps]]
name = "Long"
pool = "Web Pool"
script = "echo started; sleep 9{marker}"
""")
    run = launch(workdeck, "Far")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    eventually(lambda: processes(f"sleep 9{marker}"), what="the step running in the namespace")
    cut()
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=45)
    assert done["steps"][0]["status"] == "lost"
    # Cut off, the step's processes may live on: its slot is held, and the worker says so.
    held = eventually(lambda: (w := worker(workdeck, "t-ns-remote-worker-01"))["orphans"] == 1
                      and w, what="the orphan shown on the worker")
    assert held["leased"] == 1 and held["orphan_reason"]
    assert "orphan: 1" in workdeck.cli("worker", "list").out
    assert processes(f"sleep 9{marker}")
    heal()
    eventually(lambda: not processes(f"sleep 9{marker}")
               and worker(workdeck, "t-ns-remote-worker-01")["leased"] == 0, timeout=90,
               what="the orphan killed once the worker is reachable")


PACED_FLOOD = """
name = "Paced flood"

[[steps]]
name = "Flood"
pool = "Default Worker Pool"
script = '''
for part in $(seq 0 9); do
  seq $((part * 10000 + 1)) $((part * 10000 + 10000)) | sed 's/^/line /'
  sleep 0.4
done
'''
"""


@pytest.mark.parametrize("store_kind", ["postgresql"], indirect=True)
def test_postgresql_stopped_mid_step_then_started_again_loses_nothing(postgres, workdeck,
                                                                        tmp_path):
    workdeck.cli("env", "add", "Test")
    with workdeck.client() as client:
        client.put("/api/settings", {"builtin_worker": True})
    import_runbook(workdeck, tmp_path, PACED_FLOOD)
    eventually(lambda: workdeck.cli("check").code == 0, what="the built-in worker healthy")
    run = launch(workdeck, "Paced flood")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    postgres.stop()
    try:
        eventually(lambda: "database cannot be reached" in workdeck.cli("server", "status").out,
                   timeout=30, what="server status saying the database is gone")
        listed = workdeck.cli("runs", "list")
        assert listed.code == 1
        assert "cannot answer this now: the database cannot be reached" in listed.err
    finally:
        postgres.start()
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=120)
    if done["status"] != "succeeded":
        pytest.fail(f"the run {done['status']}: {json.dumps(done['steps'])}\n{workdeck.log()}")
    assert numbered(log_lines(workdeck, run["id"])) == list(range(1, 100_001))
    with workdeck.client() as client:
        eventually(lambda: client.get("/api/server")["store_fault"] is None,
                   what="the fault cleared")
    assert "PROBLEM" not in workdeck.cli("server", "status").out


@pytest.mark.openssh
def test_a_link_down_mid_step_keeps_the_slot_until_the_orphan_is_killed(
        workdeck, openssh, netns_host, tmp_path):
    partitioned_step(workdeck, openssh, netns_host, tmp_path, netns_host.link_down,
                     netns_host.link_up)


@pytest.mark.openssh
def test_silently_dropped_packets_mid_step_then_healed(workdeck, openssh, netns_host,
                                                       tmp_path):
    partitioned_step(workdeck, openssh, netns_host, tmp_path, netns_host.drop_everything,
                     netns_host.heal)


# ---------------------------------------------------------------- refusals


def test_a_worker_with_running_steps_cannot_be_removed(workdeck, ssh_servers, client_key,
                                                       tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Hold"
[[steps]]
name = "Hold"
pool = "Web Pool"
script = "sleep 30"
""")
    run = launch(workdeck, "Hold")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    refused = workdeck.cli("worker", "remove", "t-web-local-worker-01")
    assert refused.code == 1 and "drain it" in refused.err and refused.err.count("\n") == 1
    assert worker(workdeck, "t-web-local-worker-01")["leased"] == 1
    workdeck.cli("runs", "cancel", str(run["id"]))
    wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    eventually(lambda: workdeck.cli("worker", "remove", "t-web-local-worker-01").code == 0,
               what="the worker removable once its step ended")


def test_custom_health_checks_get_no_stdin_and_a_time_limit(workdeck, ssh_servers,
                                                            client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    with workdeck.client() as client:
        policy = client.get("/api/policy")
        marker = stamp()
        for script, code, reason in (("cat; echo read to the end", 0, ""),
                                     (f"sleep 99{marker}", 2, "timed out"),
                                     ("echo fine", 0, "")):
            client.put("/api/policy", {**policy, "timeout_s": 4, "custom_script": script})
            result = workdeck.cli("check", "--json")
            checked = json.loads(result.out)[0]
            assert result.code == code, checked
            assert reason in checked["reason"]
            assert not processes(f"sleep 99{marker}")  # killed with its group


@pytest.mark.openssh
def test_revoked_and_certified_host_keys(workdeck, openssh):
    from test_openssh_health import add, check_one

    known_hosts = workdeck.home / ".ssh" / "known_hosts"
    ca = workdeck.home / "ca"
    _generate_key(ca, "workdeck test CA")
    other_ca = workdeck.home / "other-ca"
    _generate_key(other_ca, "another CA")
    ca_line = (ca.with_name("ca.pub")).read_text().split()

    # A key marked @revoked is refused, even with --trust-host-key.
    revoked = openssh()
    known_hosts.write_text(f"@revoked [{revoked.host}]:{revoked.port} "
                           f"{revoked.host_public_key()}\n")
    add(workdeck, "t-revoked-local-worker-01", revoked, "--trust-host-key")
    code, w = check_one(workdeck, "t-revoked-local-worker-01")
    assert code == 2 and "REVOKED" in w["reason"] and w["host_key"] is None

    # A host certificate signed by a @cert-authority is trusted, and never pinned, so a
    # re-keyed host certified by the same authority is trusted as well.
    certified = openssh(host_certificate=True)
    certified.sign_host_key(ca)
    certified.stop()
    certified.start()
    with known_hosts.open("a") as out:
        out.write(f"@cert-authority [{certified.host}]:{certified.port} {ca_line[0]} "
                  f"{ca_line[1]}\n")
    add(workdeck, "t-certified-local-worker-01", certified)
    code, w = check_one(workdeck, "t-certified-local-worker-01")
    assert code == 0, w["reason"]
    assert w["host_key"] is None
    certified.regenerate_host_key()
    certified.sign_host_key(ca)
    certified.stop()
    certified.start()
    workdeck.cli("worker", "disable", "t-certified-local-worker-01")  # drops the connection
    workdeck.cli("worker", "enable", "t-certified-local-worker-01")
    code, w = check_one(workdeck, "t-certified-local-worker-01")
    assert code == 0, w["reason"]

    # Signed by another authority: refused. A plain key for a host with an authority:
    # refused too, --trust-host-key or not.
    certified.sign_host_key(other_ca)
    certified.stop()
    certified.start()
    workdeck.cli("worker", "disable", "t-certified-local-worker-01")
    workdeck.cli("worker", "enable", "t-certified-local-worker-01")
    code, w = check_one(workdeck, "t-certified-local-worker-01")
    assert code == 2 and "refused" in w["reason"] and w["host_key"] is None
    plain = openssh()
    with known_hosts.open("a") as out:
        out.write(f"@cert-authority [{plain.host}]:{plain.port} {ca_line[0]} {ca_line[1]}\n")
    add(workdeck, "t-plain-local-worker-01", plain, "--trust-host-key")
    code, w = check_one(workdeck, "t-plain-local-worker-01")
    assert code == 2 and "cert-authority" in w["reason"] and w["host_key"] is None


def test_trust_without_a_fingerprint_shows_it_and_refuses_unattended(workdeck, ssh_servers,
                                                                     client_key):
    server = ssh_servers()
    workdeck.cli("worker", "add", "t-new-local-worker-01", "--host", server.host, "--port",
                 str(server.port), "--key-path", str(client_key))
    workdeck.cli("check")
    result = workdeck.cli("worker", "trust", "t-new-local-worker-01")
    assert result.code == 1 and server.fingerprint in result.err
    assert "--fingerprint" in result.err
    assert worker(workdeck, "t-new-local-worker-01")["host_key"] is None
    with workdeck.target.sync_client() as http:
        refused = http.post("/api/workers/t-new-local-worker-01/trust", json={})
    assert refused.status_code == 422 and server.fingerprint in refused.json()["detail"]


def test_inputs_are_bounded(workdeck, tmp_path):
    transport = httpx.HTTPTransport(uds=str(workdeck.data_dir.socket))
    with httpx.Client(transport=transport, base_url="http://workdeck") as http:
        declared = http.post("/api/pools", content=b"x" * 100_000,
                             headers={"content-type": "application/json"})
        assert declared.status_code == 413 and "64 KB" in declared.json()["detail"]

        def pieces():
            for _ in range(200):
                yield b"x" * 10_000

        streamed = http.post("/api/pools", content=pieces(),
                             headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert http.get("/api/server").status_code == 200
    # Nested YAML aliases that would multiply by ten a level.
    text = "l0: &l0\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n"
    for level in range(1, 9):
        children = ", ".join(f"c{level}_{i}: *l{level - 1}" for i in range(10))
        text += f"l{level}: &l{level}\n  children: {{{children}}}\n"
    inventory = tmp_path / "nested.yml"
    inventory.write_text(text)
    started = time.monotonic()
    result = workdeck.cli("worker", "import", str(inventory))
    assert result.code == 0, result.err
    assert time.monotonic() - started < 30  # a bound on the test, not a benchmark


def test_a_data_dir_that_is_not_workdecks_is_refused(tmp_path):
    home = tmp_path / "someones-home"
    home.mkdir(mode=0o755)
    (home / ".bashrc").write_text("# theirs\n")
    from click.testing import CliRunner

    from console.cli import cli

    result = CliRunner().invoke(cli, ["--data-dir", str(home), "worker", "list"])
    assert result.exit_code == 1 and "not a Workdeck data directory" in result.stderr
    assert oct(home.stat().st_mode & 0o777) == oct(0o755)
    assert sorted(p.name for p in home.iterdir()) == [".bashrc"]
    assert DataDir(home / "new").is_workdeck()


def test_a_runbook_variable_named_like_the_wrappers_is_not_clobbered(workdeck, ssh_servers,
                                                                     client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Vars"
[variables]
w = "mine"
s = "also mine"
[[steps]]
name = "Show"
pool = "Web Pool"
script = 'echo "w=$w s=$s"'
""")
    result = workdeck.cli("run", "Vars", "--env", "Test", "--follow")
    assert result.code == 0 and "w=mine s=also mine" in result.out
