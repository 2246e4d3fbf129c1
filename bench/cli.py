"""Benchmark: how fast the command line answers, each command a whole process.

Usage: .venv/bin/python bench/cli.py [--runs 7] [--workers 200]

Starts a server on a fresh data directory, registers N workers (pointing at a closed
loopback port: listing them needs no SSH), then times, each as its own process:
`workdeck --help` (goal under 0.25 s), `workdeck worker list` (goal under 0.4 s with
200 workers), `workdeck worker list --json` and `workdeck runs list`. Prints the median
and the worst of the runs.

Then, on real OpenSSH workers on loopback (`--no-fleet` leaves this out), each command
beside its peer in the same run:
- `workdeck check --json` over 200 healthy workers whose connections are open, beside
  `ansible all -m raw -a 'cat /proc/loadavg' -f 50` on the same inventory (goal: at
  least 30 times faster; ansible-core is installed into a throwaway venv);
- `workdeck runs log ID` of a finished 1,000,000-line run, beside plain
  `ssh host cmd > /dev/null` printing the same lines (goal: within 2x);
- `workdeck run Flood --follow` (launch and follow it to the end; goal within 2.5x ssh);
- `curl --unix-socket ... /api/runs/ID/log.txt` of the finished run.
Output goes to /dev/null, as a pipe into another program would take it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from console.client import Client, Target, start_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

WORKDECK = [sys.executable, "-m", "console.cli"]


def timed(args: list[str], env: dict[str, str], *, program: list[str] = WORKDECK,
          ok: tuple[int, ...] = (0,)) -> float:
    """Seconds one whole process takes; its output goes to /dev/null."""
    start = time.perf_counter()
    done = subprocess.run([*program, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join([*program, *args])[:200]} failed: "
                         f"{done.stderr.decode()[-500:]}")
    return elapsed


def row(label: str, times: list[float], peer: list[float] | None = None,
        peer_label: str = "", goal: str = "") -> None:
    median, worst = statistics.median(times), max(times)
    line = f"  {label:34} {median:7.3f} s median, {worst:7.3f} s worst"
    if peer:
        peer_median = statistics.median(peer)
        line += (f"   {peer_label}: {peer_median:.3f} s median, {max(peer):.3f} s worst"
                 f" -> {median / peer_median:.2f}x its time")
    print(line + (f"  (goal {goal})" if goal else ""), flush=True)


def fleet_rows(options: argparse.Namespace) -> None:
    """check --json beside ansible; runs log, run --follow and curl beside plain ssh."""
    from health import bench_account, ensure_ansible, raise_fd_limit, start_sshds
    from logs import command

    raise_fd_limit()
    ansible = None if options.no_ansible else ensure_ansible()
    user = bench_account()
    root = Path(tempfile.mkdtemp(prefix="wd-bench-cli-fleet-"))
    root.chmod(0o755)  # the benchmark account's sshd sessions read the key files here
    servers = start_sshds(root, 4)
    data_dir = DataDir(root / "data")
    env = {**os.environ, "WORKDECK_HOME": str(data_dir.root)}
    env.pop("WORKDECK_SERVER", None)
    target = Target(data_dir)
    start_server(target)
    key = str(servers[0].client_key)
    workers = [{"name": f"bench-worker-{i:04d}", "host": "127.0.0.1",
                "port": servers[i % len(servers)].port, "user": user, "key_path": key,
                "pools": ["Bench Pool"]} for i in range(options.workers)]
    try:
        with Client(target) as client:
            client.put("/api/settings", {"builtin_worker": False})
            client.put("/api/policy", client.get("/api/policy") | {
                "interval_s": 86400, "timeout_s": 60, "disk_free_warning_mb": 0,
                "load_warning_factor": 1000})
            client.post("/api/workers/import", {"workers": workers, "trust_host_key": True})
            healthy = sum(w["status"] == "healthy" for w in client.post("/api/checks", {}))
            client.post("/api/environments", {"name": "Bench"})
            flood = (f'name = "Flood"\n[[steps]]\nname = "Print"\npool = "Bench Pool"\n'
                     f'script = "{command(options.lines)}"\n')
            client.post("/api/runbooks", {"toml": flood})
        print(f"{options.workers} workers over {len(servers)} loopback sshd servers, "
              f"{healthy} healthy; each figure a whole process, output to /dev/null",
              flush=True)
        checks = [timed(["check", "--json"], env) for _ in range(options.runs)]
        peer = None
        if ansible is not None:
            inventory = root / "inventory.ini"
            inventory.write_text("[bench]\n" + "".join(
                f"{w['name']} ansible_host=127.0.0.1 ansible_port={w['port']} "
                f"ansible_user={user} ansible_ssh_private_key_file={key}\n"
                for w in workers))
            masters = root / "ansible-cp"
            ansible_env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False",
                           "ANSIBLE_LOCALHOST_WARNING": "False",
                           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(masters)}
            peer = [timed(["all", "-i", str(inventory), "-m", "raw", "-a",
                           "cat /proc/loadavg", "-f", "50"], ansible_env,
                          program=[str(ansible)]) for _ in range(options.peer_runs)]
            # Ansible keeps an ssh master per host for a minute (ControlPersist=60s):
            # 200 of them would still be there while the next rows are timed.
            subprocess.run(["pkill", "-f", str(masters)], check=False)
        row("workdeck check --json", checks, peer, "ansible -m raw -f 50",
            "at least 30x faster than ansible")
        if peer:
            print(f"    ({statistics.median(peer) / statistics.median(checks):.0f}x faster "
                  "than ansible at the median)")

        sshd = servers[0]
        ssh = ["ssh", "-p", str(sshd.port), "-i", key, "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               f"{user}@{sshd.host}"]
        plain = [timed([command(options.lines)], env, program=ssh)
                 for _ in range(options.runs)]
        follows = [timed(["run", "Flood", "--env", "Bench", "--follow"], env)
                   for _ in range(options.peer_runs)]
        with Client(target) as client:
            run_id = max(r["id"] for r in client.get("/api/runs"))
        logs = [timed(["runs", "log", str(run_id)], env) for _ in range(options.runs)]
        curl = ["curl", "-sSf", "--unix-socket", str(data_dir.socket)]
        curls = [timed([f"http://workdeck/api/runs/{run_id}/log.txt"], env, program=curl)
                 for _ in range(options.runs)]
        print(f"a finished run of {options.lines:,} lines (about 80 bytes each):")
        row("plain ssh host cmd", plain)
        row(f"workdeck runs log {run_id}", logs, plain, "ssh", "within 2x ssh")
        row("workdeck run Flood --follow", follows, plain, "ssh", "within 2.5x ssh")
        row("curl .../log.txt", curls, plain, "ssh")
    finally:
        with contextlib.suppress(Exception), Client(target) as client:
            client.post("/api/server/stop")
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--peer-runs", type=int, default=3,
                        help="runs of the slow ones: ansible, run --follow")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--no-fleet", action="store_true")
    parser.add_argument("--no-ansible", action="store_true")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wd-bench-cli-"))
    data_dir = DataDir(root / "data")
    env = {**os.environ, "WORKDECK_HOME": str(data_dir.root)}
    env.pop("WORKDECK_SERVER", None)
    target = Target(data_dir)
    start_server(target)
    try:
        with Client(target) as client:
            client.post("/api/workers/import", {"workers": [
                {"name": f"bench-worker-{i:04d}", "host": "127.0.0.1", "port": 9,
                 "pools": ["Bench Pool"]} for i in range(options.workers)],
                "pools": ["Bench Pool"]})
        goals = {"--help": 0.25, "worker list": 0.4}
        print(f"{options.workers} workers, {options.runs} runs of each command (a whole process)")
        for command in ("--help", "worker list", "worker list --json", "runs list"):
            args = command.split()
            timed(args, env)  # warm the file cache
            times = [timed(args, env) for _ in range(options.runs)]
            goal = goals.get(command)
            print(f"  workdeck {command:22} {statistics.median(times):6.3f} s median, "
                  f"{max(times):6.3f} s worst" + (f"  (goal < {goal} s)" if goal else ""))
    finally:
        with Client(target) as client:
            client.post("/api/server/stop")
    if not options.no_fleet:
        fleet_rows(options)


if __name__ == "__main__":
    main()
