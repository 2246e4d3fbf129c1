"""Benchmark: the two stores, PostgreSQL beside SQLite, for the same work.

Usage: .venv/bin/python bench/store.py [--lines 1000000] [--floods 7] [--launches 200]
       [--workers 1000] [--sweeps 10]

- A step printing --lines lines (about 80 bytes each) on a loopback OpenSSH worker,
  launched and followed to its last line by a client (bench/logs.py's flood), on a
  server using each store.
- Launches per second: --launches runs of a one-step runbook on the built-in worker,
  launched one after the other through the API (each stores a run and its steps), then
  the time until all of them ended.
- What health checks cost the database: --sweeps sweeps of --workers workers' results
  written as the checker writes them (one transaction a sweep: each worker's latest state
  and a history row), i.e. a minute each with checks every 60 s: rows and bytes the
  database takes per minute, and the time a sweep's write takes.

PostgreSQL runs on this machine (loopback, fsync on, commits not waiting for it, as
SQLite's synchronous=NORMAL in WAL mode), as an unprivileged account, started by this
script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from logs import command, flood_once  # noqa: E402
from postgres import PostgresServer, find_postgres  # noqa: E402
from rig import start_rig  # noqa: E402

from console.demo import stop_server  # noqa: E402


def floods_and_launches(database: str | None, lines: int, floods: int, launches: int
                        ) -> dict[str, object]:
    rig = start_rig("wd-store-", database)
    try:
        with rig.http() as http:
            http.post("/api/workers", json={
                "name": "bench-worker", "host": rig.sshd.host, "port": rig.sshd.port,
                "user": rig.user, "key_path": str(rig.sshd.client_key),
                "pools": ["Bench Pool"], "trust_host_key": True}).raise_for_status()
            http.post("/api/checks", json={})
            http.post("/api/environments", json={"name": "Bench"})
            http.post("/api/runbooks", json={"toml": (
                f'name = "Flood"\n[[steps]]\nname = "Print"\npool = "Bench Pool"\n'
                f'script = "{command(lines)}"\n')}).raise_for_status()
            http.post("/api/runbooks", json={"toml": (
                'name = "Quick"\n[[steps]]\nname = "Nothing"\n'
                'pool = "Default Worker Pool"\nscript = "true"\n')}).raise_for_status()
            flooded = [flood_once(http) for _ in range(floods)]
            started = time.perf_counter()
            ids = [http.post("/api/runs", json={"runbook": "Quick", "environment": "Bench"}
                             ).json()["id"] for _ in range(launches)]
            launched = time.perf_counter() - started
            while any(http.get(f"/api/runs/{run_id}").json()["finished_at"] is None
                      for run_id in ids[-5:]):
                time.sleep(0.05)
            ended = time.perf_counter() - started
            statuses = {http.get(f"/api/runs/{run_id}").json()["status"] for run_id in ids}
        return {"flood_s": sorted(elapsed for elapsed, _s, _n in flooded),
                "flood_status": sorted({status for _e, status, _n in flooded}),
                "flood_lines": sorted({n for _e, _s, n in flooded}),
                "launch_per_s": launches / launched, "ended_per_s": launches / ended,
                "launch_status": sorted(statuses)}
    finally:
        stop_server(rig.target)
        rig.sshd.stop()


def sweeps(database: str | Path, workers: int, count: int) -> dict[str, float]:
    """Health-check results of `workers` workers written `count` times, as the checker
    does; rows and bytes added, seconds per sweep's write."""
    from sqlmodel import select

    from backend import fleet
    from backend.health.results import Outcome, write
    from backend.store.db import Store
    from backend.store.models import Worker
    from wire.workers import WorkerCreate

    store = Store(database)
    try:
        fleet.add_workers(store, [WorkerCreate(name=f"b-sweep-worker-{i:05d}",
                                               host="127.0.0.1", port=1, pools=["Sweep"])
                                  for i in range(workers)], "bench")
        with store.read() as session:
            ids = dict(session.exec(select(Worker.id, Worker.name)).all())
        before = _size(store, database)
        times = []
        for sweep in range(count):
            batch = [Outcome(worker_id, name, "healthy", "", {"os": "Debian 12"},
                             latency_ms=3.0 + sweep, connect_ms=1.0, load1=0.1,
                             disk_free_mb=10_000.0) for worker_id, name in ids.items()]
            started = time.perf_counter()
            write(store, batch, history_size=120, now=datetime.now(UTC))
            times.append(time.perf_counter() - started)
        after = _size(store, database)
        return {"bytes_per_minute": (after - before) / count,
                "rows_per_minute": 2 * workers,  # each worker's row updated, one history row
                "write_s": statistics.median(times), "write_worst_s": max(times)}
    finally:
        store.close()


def _size(store, database: str | Path) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    if isinstance(database, Path):
        import sqlite3

        with sqlite3.connect(database) as conn:  # what the WAL holds goes into the file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return database.stat().st_size
    with store.read() as session:
        return session.execute(text("SELECT pg_database_size(current_database())")).scalar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--floods", type=int, default=7)
    parser.add_argument("--launches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--sweeps", type=int, default=10)
    args = parser.parse_args()
    bin_dir = find_postgres()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql).")
    account = "workdeck-test" if os.geteuid() == 0 else None
    with PostgresServer(bin_dir, account=account, durable=True) as postgres:
        results = {}
        for kind in ("sqlite", "postgresql"):
            database = postgres.database(f"bench_{kind}") if kind == "postgresql" else None
            results[kind] = floods_and_launches(database, args.lines, args.floods,
                                                args.launches)
            where: str | Path = (postgres.database(f"sweeps_{kind}") if kind == "postgresql"
                                 else Path(tempfile.mkdtemp(prefix="wd-sweeps-")) / "s.db")
            results[kind].update(sweeps(where, args.workers, args.sweeps))
    lite, pg = results["sqlite"], results["postgresql"]
    print(f"{args.lines} lines a flood, {args.floods} floods; {args.launches} launches; "
          f"{args.workers} workers' checks, {args.sweeps} sweeps")
    print(f"  runs: {lite['flood_status']} / {pg['flood_status']}; lines reaching the "
          f"follower: {lite['flood_lines']} / {pg['flood_lines']}; quick runs "
          f"{lite['launch_status']} / {pg['launch_status']}")
    print(f"{'':38}{'SQLite':>14}{'PostgreSQL':>14}")

    def row(label: str, a: float, b: float, unit: str, ratio: bool = True) -> None:
        extra = f"   ({b / a:.2f}x)" if ratio and a else ""
        print(f"  {label:36}{a:11.2f} {unit:2}{b:11.2f} {unit:2}{extra}")

    row("flood launched → followed, median", statistics.median(lite["flood_s"]),
        statistics.median(pg["flood_s"]), "s")
    row("flood, worst", max(lite["flood_s"]), max(pg["flood_s"]), "s")
    row("launches per second", lite["launch_per_s"], pg["launch_per_s"], "/s")
    row("launched and ended per second", lite["ended_per_s"], pg["ended_per_s"], "/s")
    row("checks: a sweep's write, median", lite["write_s"] * 1000, pg["write_s"] * 1000, "ms")
    row("checks: a sweep's write, worst", lite["write_worst_s"] * 1000,
        pg["write_worst_s"] * 1000, "ms")
    row("checks: rows a minute", lite["rows_per_minute"], pg["rows_per_minute"], "", False)
    row("checks: KB the database grows a minute", lite["bytes_per_minute"] / 1024,
        pg["bytes_per_minute"] / 1024, "KB")


if __name__ == "__main__":
    main()
