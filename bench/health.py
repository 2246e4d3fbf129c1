"""Benchmark: health-check sweeps over N workers on loopback OpenSSH, beside ansible -m raw.

Usage: .venv/bin/python bench/health.py [--sizes 200,1000] [--sshd 4] [--no-ansible]

Registers N workers (spread over a few real sshd servers on loopback) in a fresh Workdeck
server, then times a cold sweep (every connection new) and a warm sweep (connections
open) through the HTTP API, and `ansible all -m raw -a 'cat /proc/loadavg' -f 50` on the
same inventory (ansible-core from PyPI, installed into a throwaway venv by this script).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from openssh import OpenSSHServer, find_sshd  # noqa: E402

from console.client import Target, start_server  # noqa: E402
from console.demo import stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

ANSIBLE_VENV = Path(tempfile.gettempdir()) / "workdeck-bench-ansible"
BENCH_USER = "workdeck-bench"


def bench_account() -> str:
    """A plain account with /bin/sh, like a worker's deploy account.

    Logging in as the benchmark's own user would time that user's shell start-up files
    (on this machine root's ~/.bashrc runs `pyenv init`, about 150 ms a session), not SSH.
    """
    import pwd

    if os.geteuid() != 0:
        return pwd.getpwuid(os.getuid()).pw_name
    try:
        pwd.getpwnam(BENCH_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", BENCH_USER],
                       check=True)
    # An account with a locked password ("!") is refused by sshd without PAM.
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)
    return BENCH_USER


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ensure_ansible() -> Path:
    ansible = ANSIBLE_VENV / "bin" / "ansible"
    if not ansible.exists():
        print("installing ansible-core into", ANSIBLE_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "ansible-core"],
                       check=True)
    return ansible


def start_sshds(root: Path, count: int) -> list[OpenSSHServer]:
    servers = []
    for i in range(count):
        # Enough unauthenticated slots for a cold sweep's burst of handshakes.
        server = OpenSSHServer(root / f"sshd-{i}", max_startups=1000, max_sessions=20)
        if servers:  # one client key for every server, as one operator's key would be
            server.client_key = servers[0].client_key
            Path(server.authorized_keys).write_text(
                Path(servers[0].authorized_keys).read_text())
        server.start()
        servers.append(server)
    return servers


def sweep(http: httpx.Client) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    response = http.post("/api/checks", json={})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    statuses: dict[str, int] = {}
    for worker in response.json():
        statuses[worker["status"]] = statuses.get(worker["status"], 0) + 1
    return elapsed, statuses


def run_ansible(ansible: Path, inventory: Path) -> float:
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_STDOUT_CALLBACK":
           "minimal", "ANSIBLE_LOCALHOST_WARNING": "False"}
    started = time.perf_counter()
    result = subprocess.run([str(ansible), "all", "-i", str(inventory), "-m", "raw", "-a",
                             "cat /proc/loadavg", "-f", "50"],
                            env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    failed = result.stdout.count("FAILED") + result.stdout.count("UNREACHABLE")
    if failed:
        print(f"  ansible: {failed} hosts failed", flush=True)
    return elapsed


def bench_size(size: int, servers: list[OpenSSHServer], ansible: Path | None,
               root: Path, user: str) -> dict[str, float]:
    target = Target(DataDir(root / f"data-{size}"))
    start_server(target)
    key = str(servers[0].client_key)
    workers = [{"name": f"bench-worker-{i:04d}", "host": "127.0.0.1",
                "port": servers[i % len(servers)].port, "user": user,
                "key_path": key, "pools": [f"Bench Pool {i % 10}"]}
               for i in range(size)]
    transport = httpx.HTTPTransport(uds=str(target.data_dir.socket))
    figures: dict[str, float] = {}
    try:
        with httpx.Client(transport=transport, base_url="http://workdeck",
                          timeout=600) as http:
            http.put("/api/settings", json={"builtin_worker": False}).raise_for_status()
            policy = http.get("/api/policy").json()
            http.put("/api/policy", json=policy | {"interval_s": 86400, "timeout_s": 60,
                                                   "disk_free_warning_mb": 0,
                                                   "load_warning_factor": 1000},
                     ).raise_for_status()
            http.post("/api/workers/import", json={"workers": workers,
                                                   "trust_host_key": True}).raise_for_status()
            cold, cold_statuses = sweep(http)
            warm, warm_statuses = sweep(http)
            warm2, _ = sweep(http)
        warm = min(warm, warm2)
        figures = {"cold_s": cold, "warm_s": warm}
        print(f"  workdeck cold sweep: {cold:7.2f} s  {size / cold:8.0f} workers/s  "
              f"{cold_statuses}", flush=True)
        print(f"  workdeck warm sweep: {warm:7.2f} s  {size / warm:8.0f} workers/s  "
              f"{warm_statuses}", flush=True)
    finally:
        stop_server(target)
    if ansible is not None:
        inventory = root / f"inventory-{size}.ini"
        lines = ["[bench]"] + [
            f"{w['name']} ansible_host=127.0.0.1 ansible_port={w['port']} "
            f"ansible_user={w['user']} ansible_ssh_private_key_file={key}" for w in workers]
        inventory.write_text("\n".join(lines) + "\n")
        seconds = run_ansible(ansible, inventory)
        figures["ansible_s"] = seconds
        print(f"  ansible -m raw -f 50: {seconds:6.2f} s  {size / seconds:8.0f} workers/s",
              flush=True)
        print(f"  ratio: cold {seconds / figures['cold_s']:.1f}x, warm "
              f"{seconds / figures['warm_s']:.1f}x the throughput of ansible", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--sshd", type=int, default=4, help="sshd servers to spread over")
    parser.add_argument("--no-ansible", action="store_true")
    args = parser.parse_args()
    if find_sshd() is None:
        raise SystemExit("bench/health.py needs OpenSSH's sshd (apt-get install openssh-server)")
    raise_fd_limit()
    ansible = None if args.no_ansible else ensure_ansible()
    user = bench_account()
    root = Path(tempfile.mkdtemp(prefix="wd-bench-"))
    root.chmod(0o755)  # the benchmark account's sshd sessions read the key files here
    servers = start_sshds(root, args.sshd)
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"{size} workers over {len(servers)} loopback sshd servers "
                  f"({os.cpu_count()} CPUs):", flush=True)
            bench_size(size, servers, ansible, root, user)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
