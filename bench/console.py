"""Benchmark: the console and the server with 10,000 workers in 300 pools.

Usage: .venv/bin/python bench/console.py [--workers 10000] [--pools 300]

Fills a fresh store through the API (`POST /api/workers/import`): a few dozen workers are
real SSH servers on loopback (asyncssh, in this process) and take steps; the rest point
at a closed loopback port, so that checks fail fast and keep coming. While runbooks keep
leasing and releasing slots and checks keep arriving (checked every 30 s, jittered), it
measures, in a console of its own process:

- the time from starting the console to its first full Dashboard frame (every pool on it),
- the time from each filter keystroke in the Workers view to the table drawn again with
  its result,
- light API requests (`GET /api/server`) every 20 ms meanwhile: their p50 and p99,

all while the unreachable workers' checks run: the measures start when their second
round is due (they back off to twice the interval after failing once), the burst in which
9,960 failing checks come within half a minute;

and, in this process against a copy of the store, the reads a console's snapshot makes
and:

- the server's bookkeeping of one health-check sweep (store 10,000 results, read them back
  for the push stream, publish them),
- one utilization sample (every pool's figures, write, publish).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import asyncssh  # noqa: E402
import httpx  # noqa: E402
from conftest import LoopThread  # noqa: E402
from health import raise_fd_limit  # noqa: E402

from backend.demo.sshd import LocalSSHServer  # noqa: E402
from console.client import Target, start_server  # noqa: E402
from console.demo import stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

LIVE_WORKERS = 40  # real SSH workers, spread over the first LIVE_POOLS pools
LIVE_POOLS = 10
FILTER = "bench007"  # typed one key at a time in the Workers view


def pool_name(index: int) -> str:
    return f"Bench {index:03d} Local Test Worker Pool"


def worker_name(pool: int, index: int) -> str:
    return f"t-bench{pool:03d}-local-worker-{index:02d}"


def start_live_servers(loop: LoopThread, root: Path, key: asyncssh.SSHKey) -> list[Any]:
    authorized = key.export_public_key("openssh").decode().strip()

    async def start() -> list[LocalSSHServer]:
        return [await LocalSSHServer(root / f"live-{i}", authorized_keys=[authorized]).start()
                for i in range(LIVE_WORKERS)]

    return loop.run(start(), timeout=120)


def fill(http: httpx.Client, servers: list[Any], key_path: str, workers: int,
         pools: int) -> None:
    specs = []
    per_pool = -(-workers // pools)
    for n in range(workers):
        pool, index = n % pools, n // pools + 1
        live = n < len(servers)
        specs.append({
            "name": worker_name(pool, index), "pools": [pool_name(pool)], "capacity": 4,
            "host": "127.0.0.1", "port": servers[n].port if live else 1,
            "key_path": key_path, "trust_host_key": live})
    started = time.perf_counter()
    http.post("/api/workers/import", json={"workers": specs}, timeout=600).raise_for_status()
    print(f"  imported {workers} workers in {pools} pools (about {per_pool} each) in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    for index in range(pools):
        http.put(f"/api/pools/{pool_name(index)}",
                 json={"description": f"bench pool {index}"}).raise_for_status()


def api_latency(http: httpx.Client, stop: threading.Event, seen: list[float]) -> None:
    """Light requests while the console is measured, as monitoring would make them."""
    while not stop.is_set():
        started = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            http.get("/api/server")
            seen.append(time.perf_counter() - started)
        stop.wait(0.02)


def churn(http: httpx.Client, stop: threading.Event) -> None:
    """Keep runs going on the live pools: leases taken and given back all the time."""
    turn = 0
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            http.post("/api/runs", json={"runbook": f"Churn {turn % LIVE_POOLS}",
                                         "environment": "Bench"})
        turn += 1
        stop.wait(0.1)


def console_probe(data_dir: str, pools: int) -> None:
    """Run in its own process: first Dashboard frame, then filter keystrokes."""
    started = time.perf_counter()
    from textual import events

    from console.app import WorkdeckApp
    from console.widgets.live_table import LiveTable

    imported = time.perf_counter() - started

    async def main() -> None:
        begun = time.perf_counter()
        app = WorkdeckApp(Target(DataDir(Path(data_dir))))
        async with app.run_test(size=(160, 45)) as pilot:
            table = app.screen.query_one("#pools-table", LiveTable)
            while not app.fleet_loaded:
                await asyncio.sleep(0.005)
            loaded = time.perf_counter() - begun
            while table.row_count < pools:
                await asyncio.sleep(0.005)
            await pilot.pause()  # the frame with them on it
            first_frame = time.perf_counter() - begun
            await pilot.press("w")
            await pilot.pause(0.5)
            screen = app.screen
            table = screen.query_one("#workers-table", LiveTable)
            # A key counts as answered when its filter is applied and the table's last
            # line on screen has been drawn again with the result.
            drawn = asyncio.Event()
            armed = False
            render_line = table.render_line

            def noted_render(y: int):  # type: ignore[no-untyped-def]
                strip = render_line(y)
                if armed and y == table.scrollable_content_region.height - 1:
                    drawn.set()
                return strip

            table.render_line = noted_render  # type: ignore[method-assign]
            filter_changed = screen.filter_changed

            def applied() -> None:
                nonlocal armed
                filter_changed()
                armed = True  # only a draw after the filter counts

            screen.filter_changed = applied  # type: ignore[method-assign]
            await pilot.press("slash")
            latencies = []
            for char in FILTER:
                drawn.clear()
                pressed = time.perf_counter()
                app.post_message(events.Key(char, char))
                await drawn.wait()
                latencies.append(time.perf_counter() - pressed)
                armed = False
                await asyncio.sleep(0.1)  # a quick typist
            rows = screen.query_one("#workers-table", LiveTable).row_count
        print(json.dumps({"imports_ms": imported * 1000, "first_frame_ms": first_frame * 1000,
                          "snapshot_ms": loaded * 1000,
                          "keys_ms": [round(x * 1000, 1) for x in latencies], "rows": rows}))

    if os.environ.get("WORKDECK_BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("asyncio.run(main())", globals(), locals(),
                        os.environ["WORKDECK_BENCH_PROFILE"])
    else:
        asyncio.run(main())


def server_costs(database: Path, workers: int) -> dict[str, float]:
    """The server's own work at this size, timed in this process on a copy of the store."""
    from backend.events import EventBus
    from backend.fleet.usage import Usage
    from backend.health.checker import HealthChecker
    from backend.health.results import Outcome
    from backend.runs.leases import Leases
    from backend.store.db import Store
    from backend.transport.connections import ConnectionPool
    from backend.transport.reach import Reach

    copy = database.parent / "copy.db"
    shutil.copy(database, copy)
    for suffix in ("-wal", "-shm"):
        if Path(f"{database}{suffix}").exists():
            shutil.copy(f"{database}{suffix}", f"{copy}{suffix}")
    store = Store(copy)

    async def measure() -> dict[str, float]:
        from backend import fleet as fleet_store

        bus = EventBus(retain=("worker",))  # as the server holds them
        bus.seed("worker", {w["name"]: w for w in fleet_store.list_workers(store)})
        reach = Reach(store, ConnectionPool())
        checker = HealthChecker(store, reach, bus)
        subscription = bus.subscribe()
        targets = reach.targets()
        sweeps = []
        for flip in range(3):
            checker._pending = [
                Outcome(t.id, t.name, "unavailable", f"connection refused ({flip})", {},
                        1.0 + flip, None) for t in targets]
            started = time.perf_counter()
            await checker.flush()
            sweeps.append(time.perf_counter() - started)
            await subscription.next_batch(0)
        from backend import fleet as fleet_store
        from backend.fleet import usage as usage_store

        for name, read in (("pools", lambda: fleet_store.list_pools(store)),
                           ("history", lambda: usage_store.history(store)),
                           ("workers", lambda: fleet_store.list_workers(store))):
            started = time.perf_counter()
            read()
            print(f"  (snapshot part: {name} {1000 * (time.perf_counter() - started):.0f} ms)")
        usage = Usage(store, Leases(store), bus)
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            await usage.sample()
            samples.append(time.perf_counter() - started)
        return {"sweep_ms": statistics.median(sweeps) * 1000, "targets": len(targets),
                "sample_ms": statistics.median(samples) * 1000}

    try:
        return asyncio.run(measure())
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--pools", type=int, default=300)
    parser.add_argument("--console-probe", nargs=2, metavar=("DATA_DIR", "POOLS"))
    args = parser.parse_args()
    if args.console_probe:
        console_probe(args.console_probe[0], int(args.console_probe[1]))
        return
    raise_fd_limit()
    root = Path(tempfile.mkdtemp(prefix="wd-scale-"))
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = root / "client_ed25519"
    key.write_private_key(str(key_path))
    key_path.chmod(0o600)
    loop = LoopThread()
    target = Target(DataDir(root / "data"))
    stop = threading.Event()
    try:
        servers = start_live_servers(loop, root, key)
        start_server(target)
        transport = httpx.HTTPTransport(uds=str(target.data_dir.socket))
        with httpx.Client(transport=transport, base_url="http://workdeck", timeout=60) as http:
            http.put("/api/settings", json={"builtin_worker": False})
            http.put("/api/policy", json={"interval_s": 30, "timeout_s": 5,
                                          "disk_free_warning_mb": 0,
                                          "load_warning_factor": 1000, "history_size": 20,
                                          "custom_script": ""}).raise_for_status()
            print(f"{args.workers} workers in {args.pools} pools, {LIVE_WORKERS} of them real "
                  "SSH servers taking steps", flush=True)
            fill(http, servers, str(key_path), args.workers, args.pools)
            http.post("/api/environments", json={"name": "Bench"})
            for index in range(LIVE_POOLS):
                http.post("/api/runbooks", json={"toml": (
                    f'name = "Churn {index}"\n[[steps]]\nname = "Work"\n'
                    f'pool = "{pool_name(index)}"\nscript = "sleep 0.5"\n')}
                ).raise_for_status()
            http.post("/api/checks", json={"pools": [pool_name(i) for i in range(LIVE_POOLS)]},
                      timeout=120)
            # The first sweep of a new fleet checks everything at once; measure the steady
            # state after it, where checks are spread over the interval (and keep coming).
            started = time.perf_counter()
            while any(w["checked_at"] is None for w in http.get("/api/workers").json()):
                time.sleep(2)
            swept = time.perf_counter()
            print(f"  first sweep of the new fleet done in {swept - started:.0f} s",
                  flush=True)
            churner = threading.Thread(target=churn, args=(http, stop), daemon=True)
            churner.start()
            # Failing checks come again after twice the interval (30 s here), spread.
            time.sleep(max(0.0, 48 - (time.perf_counter() - swept)))
            latencies: list[float] = []
            pinger = threading.Thread(target=api_latency, args=(
                httpx.Client(transport=httpx.HTTPTransport(uds=str(target.data_dir.socket)),
                             base_url="http://workdeck", timeout=60), stop, latencies),
                daemon=True)
            pinger.start()
            probe = subprocess.run([sys.executable, __file__, "--console-probe",
                                    str(target.data_dir.root), str(args.pools)],
                                   capture_output=True, text=True, timeout=600)
            if probe.returncode != 0:
                raise SystemExit(f"the console probe failed:\n{probe.stderr[-3000:]}")
            console = json.loads(probe.stdout.strip().splitlines()[-1])
            stop.set()
            churner.join()
            pinger.join()
            runs = http.get("/api/runs", params={"limit": 1000}).json()
            checked = sum(1 for w in http.get("/api/workers").json()
                          if w["status"] == "unavailable" and "2 times" in w["reason"])
        costs = server_costs(target.data_dir.database, args.workers)
        keys = console["keys_ms"]
        latencies.sort()
        print(f"  runs launched while measuring:    {len(runs)}; unreachable workers checked "
              f"a second time by the end: {checked}")
        print(f"  light API requests meanwhile:     {latencies[len(latencies) // 2] * 1000:7.1f}"
              f" ms p50, {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms p99, "
              f"{latencies[-1] * 1000:.0f} ms slowest ({len(latencies)} requests)")
        print(f"  console imports:                  {console['imports_ms']:7.0f} ms")
        print(f"  start → first full Dashboard:     {console['first_frame_ms']:7.0f} ms "
              f"(the fleet's snapshot in after {console['snapshot_ms']:.0f} ms)")
        print(f"  filter keystroke, Workers view:   {max(keys):7.0f} ms slowest, "
              f"{statistics.median(keys):.0f} ms median ({len(keys)} keys: "
              f"{', '.join(f'{k:.0f}' for k in keys)}; {console['rows']} rows left)")
        print(f"  health-check sweep bookkeeping:   {costs['sweep_ms']:7.0f} ms for "
              f"{costs['targets']} results")
        print(f"  one utilization sample:           {costs['sample_ms']:7.0f} ms")
    finally:
        stop.set()
        stop_server(target)
        loop.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
