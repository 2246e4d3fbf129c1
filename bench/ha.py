"""Benchmark: several server nodes on one PostgreSQL database.

Usage: .venv/bin/python bench/ha.py [--workers 1000] [--sshd 4] [--launches 200]
       [--clients 8] [--rounds 3]

- Launches sustained: --launches runs of a one-step runbook (`true` on a pool of four
  loopback OpenSSH workers, 4 slots each) launched by --clients clients at once, spread
  over the nodes, until every run ended: runs per second, on three nodes on PostgreSQL,
  one node on PostgreSQL and one node on SQLite; and each run's step-start latency
  (launch to its step under way) at the median and the 99th percentile.
- Takeover: --workers workers (over --sshd loopback sshd servers) shared by three nodes
  with the default heartbeat (5 s) and lease (15 s); a run's step under way on the third
  node, then `kill -9` of that node: the time until the run is marked interrupted (goal
  20 s), and until every worker that node checked was checked again by the others (goal
  30 s).

Each figure is the median of --rounds rounds, the worst beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402
from health import bench_account, raise_fd_limit, start_sshds  # noqa: E402
from postgres import PostgresServer, find_postgres  # noqa: E402

from backend.nodes import owner  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

QUICK = ('name = "Quick"\n[[steps]]\nname = "Nothing"\npool = "Bench Pool"\n'
         'script = "true"\n')
HOLD = ('name = "Hold"\n[[steps]]\nname = "Hold"\npool = "Bench Pool"\n'
        'script = "sleep 600"\n')


class Node:
    def __init__(self, root: Path, name: str, database: str | None,
                 key_from: Path | None = None) -> None:
        self.name = name
        self.data_dir = DataDir(root / name)
        self.data_dir.ensure()
        if key_from is not None:  # every node holds the same key
            shutil.copy2(key_from, self.data_dir.secret_key)
        log = open(self.data_dir.log_file, "ab")  # noqa: SIM115 - the child's
        self.process = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "--data-dir", str(self.data_dir.root),
             "server", "--node", name, *(["--database", database] if database else [])],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while not self.data_dir.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node {name} did not start:\n"
                                 + self.data_dir.log_file.read_text())
            time.sleep(0.05)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.data_dir.socket)),
                                 base_url="http://workdeck", timeout=600)
        while True:
            try:
                self.http.get("/api/server").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(60)


def nodes_on(root: Path, names: list[str], database: str | None) -> list[Node]:
    first = Node(root, names[0], database)
    return [first, *(Node(root, name, database, first.data_dir.secret_key)
                     for name in names[1:])]


def prepare(http: httpx.Client, workers: list[dict[str, object]]) -> None:
    http.put("/api/settings", json={"builtin_worker": False}).raise_for_status()
    policy = http.get("/api/policy").json()
    http.put("/api/policy", json=policy | {"interval_s": 3600, "timeout_s": 60,
                                           "disk_free_warning_mb": 0,
                                           "load_warning_factor": 1000}).raise_for_status()
    http.post("/api/workers/import", json={"workers": workers, "trust_host_key": True}
              ).raise_for_status()
    http.post("/api/checks", json={}).raise_for_status()
    http.post("/api/environments", json={"name": "Bench"}).raise_for_status()
    for toml in (QUICK, HOLD):
        http.post("/api/runbooks", json={"toml": toml}).raise_for_status()


def bench_workers(sshds, user: str, count: int, pool_of) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    key = str(sshds[0].client_key)
    return [{"name": f"bench-worker-{i:04d}", "host": "127.0.0.1",
             "port": sshds[i % len(sshds)].port, "user": user, "key_path": key,
             "capacity": 4, "pools": [pool_of(i)]} for i in range(count)]


def launches(nodes: list[Node], count: int, clients: int) -> dict[str, float]:
    """Runs per second from the first launch to the last run's end, and step starts."""
    started = time.perf_counter()

    def launch(index: int) -> int:
        http = nodes[index % len(nodes)].http
        return http.post("/api/runs", json={"runbook": "Quick", "environment": "Bench"}
                         ).json()["id"]

    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(launch, range(count)))
    http = nodes[0].http
    while True:
        runs = http.get("/api/runs", params={"limit": count + 10}).json()
        mine = [run for run in runs if run["id"] in set(ids)]
        if len(mine) == count and all(run["finished_at"] for run in mine):
            break
        time.sleep(0.05)
    ended = time.perf_counter() - started
    waits = []
    for run_id in ids:
        run = http.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "succeeded", run
        waits.append((datetime.fromisoformat(run["steps"][0]["started_at"])
                      - datetime.fromisoformat(run["created_at"])).total_seconds())
    waits.sort()
    return {"per_s": count / ended, "p50_ms": 1000 * statistics.median(waits),
            "p99_ms": 1000 * waits[min(len(waits) - 1, int(len(waits) * 0.99))]}


def launch_round(root: Path, sshds, user: str, names: list[str], database: str | None,  # type: ignore[no-untyped-def]
                 count: int, clients: int) -> dict[str, float]:
    nodes = nodes_on(root, names, database)
    try:
        prepare(nodes[0].http, bench_workers(sshds, user, 4, lambda _i: "Bench Pool"))
        return launches(nodes, count, clients)
    finally:
        for node in nodes:
            node.stop()


def takeover_round(root: Path, sshds, user: str, database: str, workers: int  # type: ignore[no-untyped-def]
                   ) -> dict[str, float]:
    names = ["ha-1", "ha-2", "ha-3"]
    nodes = nodes_on(root, names, database)
    try:
        fleet = bench_workers(sshds, user, workers,
                              lambda i: "Bench Pool" if i < 4 else f"Other {i % 10}")
        prepare(nodes[0].http, fleet)
        # Each node sees the three alive (a heartbeat or two after the last start).
        while not all(sum(n["state"] == "up" for n in node.http.get("/api/nodes").json())
                      == 3 for node in nodes):
            time.sleep(0.2)
        time.sleep(6)  # and has checked its share once since
        victim = nodes[2]
        run = victim.http.post("/api/runs", json={"runbook": "Hold", "environment": "Bench"}
                               ).json()
        while not any(step["status"] == "running" for step in
                      victim.http.get(f"/api/runs/{run['id']}").json()["steps"]):
            time.sleep(0.05)
        share = {w["name"] for w in fleet if owner(str(w["name"]), names) == victim.name}
        killed = datetime.now(UTC)
        started = time.perf_counter()
        victim.stop(kill=True)
        http = nodes[0].http
        marked = rechecked = None
        while marked is None or rechecked is None:
            if time.perf_counter() - started > 120:
                raise SystemExit("no takeover within 120 s")
            if marked is None and http.get(f"/api/runs/{run['id']}").json()["status"] \
                    == "interrupted":
                marked = time.perf_counter() - started
            if rechecked is None:
                checked = {w["name"]: w["checked_at"] for w in http.get("/api/workers").json()}
                if all(checked.get(name) and datetime.fromisoformat(checked[name]) > killed
                       for name in share):
                    rechecked = time.perf_counter() - started
            time.sleep(0.1)
        return {"marked_s": marked, "rechecked_s": rechecked, "share": len(share)}
    finally:
        for node in nodes:
            node.stop()


def summary(rounds: list[dict[str, float]], key: str, worst=max) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    values = [r[key] for r in rounds]
    return statistics.median(values), worst(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--sshd", type=int, default=4)
    parser.add_argument("--launches", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["launches", "takeover"])
    args = parser.parse_args()
    bin_dir = find_postgres()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql).")
    raise_fd_limit()
    user = bench_account()
    account = "workdeck-test" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="wd-ha-"))
    root.chmod(0o755)  # the benchmark account's sessions read the key files here
    sshds = start_sshds(root, args.sshd)
    try:
        with PostgresServer(bin_dir, account=account, durable=True) as postgres:
            print(f"launches: {args.launches} one-step runs by {args.clients} clients at once, "
                  f"median of {args.rounds} (worst)", flush=True)
            setups = [("3 nodes, PostgreSQL", ["ha-1", "ha-2", "ha-3"], "pg"),
                      ("1 node, PostgreSQL", ["ha-1"], "pg"),
                      ("1 node, SQLite", ["ha-1"], "sqlite")]
            for label, names, kind in [] if args.only == "takeover" else setups:
                rounds = []
                for _ in range(args.rounds):
                    where = Path(tempfile.mkdtemp(prefix="round-", dir=root))
                    database = postgres.database() if kind == "pg" else None
                    rounds.append(launch_round(where, sshds, user, names, database,
                                               args.launches, args.clients))
                per_s = summary(rounds, "per_s", min)
                p50 = summary(rounds, "p50_ms")
                p99 = summary(rounds, "p99_ms")
                print(f"  {label:20} {per_s[0]:6.1f} runs/s ({per_s[1]:.1f})   step start "
                      f"p50 {p50[0]:5.0f} ms ({p50[1]:.0f})  p99 {p99[0]:5.0f} ms "
                      f"({p99[1]:.0f})", flush=True)
            print(f"takeover after kill -9 of one of three nodes, {args.workers} workers, "
                  "heartbeat 5 s, lease 15 s:", flush=True)
            rounds = []
            for _ in range(0 if args.only == "launches" else args.rounds):
                where = Path(tempfile.mkdtemp(prefix="round-", dir=root))
                rounds.append(takeover_round(where, sshds, user, postgres.database(),
                                             args.workers))
            if not rounds:
                return
            marked, rechecked = summary(rounds, "marked_s"), summary(rounds, "rechecked_s")
            print(f"  its run marked interrupted: {marked[0]:5.1f} s ({marked[1]:.1f})  "
                  "goal 20 s", flush=True)
            print(f"  its {rounds[0]['share']:.0f} workers checked again: {rechecked[0]:5.1f} s "
                  f"({rechecked[1]:.1f})  goal 30 s", flush=True)
    finally:
        for sshd in sshds:
            sshd.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
