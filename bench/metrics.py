"""Benchmark: rendering `GET /metrics` for a big fleet.

Usage: .venv/bin/python bench/metrics.py [--workers 10000] [--pools 300] [--runs 20000]
       [--repeat 20]

A server's parts in this process on an SQLite store holding --workers workers in
--pools pools and --runs runs of 10 runbooks in 3 environments, with a few thousand
observations in the histograms. Times Metrics.render() (what the route does in a
thread: the fleet as last published, the pools' figures read exact, one grouped count of
runs, the histograms), --repeat times: median and worst. Beside it, the peer: the same
number of series rendered by prometheus-client from plain labelled gauges holding the
values already (the library's own floor, with nothing read).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

STATUSES = ("healthy", "warning", "unhealthy", "unavailable")


def build(root: Path, workers: int, pools: int, runs: int):  # type: ignore[no-untyped-def]
    import asyncssh

    from backend import fleet
    from backend.core import Backend
    from backend.health.results import Outcome
    from backend.store.db import Store
    from backend.store.models import Pool, Run
    from wire.datadir import DataDir
    from wire.runbook import RunbookDef, Step
    from wire.workers import WorkerCreate

    data_dir = DataDir(root / "data")
    data_dir.ensure()
    key = root / "id_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key))
    store = Store(data_dir.database)
    with store.write() as session:
        for index in range(pools):
            session.add(Pool(name=f"Pool {index:03d}", description=f"bench pool {index}"))
    fleet.add_workers(store, [
        WorkerCreate(name=f"w-{n % pools:03d}-{n // pools:04d}", host="127.0.0.1", port=1,
                     key_path=str(key), pools=[f"Pool {n % pools:03d}"], capacity=4)
        for n in range(workers)], "bench")
    definition = RunbookDef(name="r", steps=[Step(name="s", pool="Pool 000",
                                                  script="true")]).model_dump_json()
    now = datetime.now(UTC)
    with store.write() as session:
        store.insert_rows(session, Run.__table__, [
            {"runbook": f"Runbook {n % 10}", "environment": ("Dev", "Test", "Prod")[n % 3],
             "status": ("succeeded", "failed", "cancelled")[n % 3], "reason": "",
             "definition": definition, "variables": "{}", "secrets": "", "guided": False,
             "step_through": False, "actor": "bench", "person": "bench",
             "created_at": now - timedelta(minutes=n), "finished_at": now, "output_bytes": 0,
             "waiting": "", "node": "", "log_closed": True, "cause": "", "schedule": "",
             "rerun_of": None, "from_step": 1} for n in range(runs)])
    backend = Backend(data_dir, listen="unix:bench", store=store)
    rng = random.Random(7)
    listed = fleet.list_workers(store)
    for worker in listed:  # as the checker publishes them
        worker["status"] = rng.choice(STATUSES)
        backend.bus.publish("worker", worker["name"], worker)
    metrics = backend.metrics
    for n in range(5000):
        metrics.checked(Outcome(n, "w", rng.choice(STATUSES), "connection refused", {},
                                rng.uniform(5, 400), None, unreachable=True))
        metrics.waited(f"Pool {n % pools:03d}", rng.uniform(0, 60))
        metrics.run_duration.labels(f"Runbook {n % 10}", "Prod", "succeeded").observe(
            rng.uniform(1, 600))
        metrics.step_duration.labels(f"Pool {n % pools:03d}").observe(
            rng.uniform(1, 600))
    return backend


def peer(series: list[tuple[str, dict[str, str], float]]) -> float:
    """prometheus-client alone: the same series as plain labelled gauges, rendered."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    gauges: dict[tuple[str, tuple[str, ...]], Gauge] = {}
    for name, labels, value in series:
        key = (name.replace("_total", "_t").replace("_count", "_c").replace("_sum", "_s")
               .replace("_bucket", "_b").replace("_created", "_cr"), tuple(sorted(labels)))
        gauge = gauges.get(key)
        if gauge is None:
            gauge = gauges[key] = Gauge(key[0], "peer", list(key[1]), registry=registry)
        (gauge.labels(**labels) if labels else gauge).set(value)
    started = time.perf_counter()
    generate_latest(registry)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--pools", type=int, default=300)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    from prometheus_client.parser import text_string_to_metric_families

    with tempfile.TemporaryDirectory(prefix="wd-metrics-") as folder:
        started = time.perf_counter()
        backend = build(Path(folder), args.workers, args.pools, args.runs)
        from backend.api.app import _settle_garbage_collector

        _settle_garbage_collector()  # as the server does once started
        print(f"fleet: {args.workers:,} workers in {args.pools} pools, {args.runs:,} runs "
              f"(made in {time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        body = backend.metrics.render()
        # The first reads the pools' members (the sampler does it at most once a second
        # in a running server, so a scrape finds them read).
        cold = time.perf_counter() - started
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            body = backend.metrics.render()
            times.append(time.perf_counter() - started)
        series = [(s.name, s.labels, s.value) for family in
                  text_string_to_metric_families(body.decode()) for s in family.samples]
        print("  each (ms):", " ".join(f"{t * 1000:.0f}" for t in times))
        peers = [peer(series) for _ in range(max(3, args.repeat // 4))]
        print(f"/metrics: {len(series):,} series, {len(body) / 1024:.0f} KiB")
        print(f"  render  median {statistics.median(times) * 1000:.1f} ms, worst "
              f"{max(times) * 1000:.1f} ms  (goal: under 50 ms); the first, reading the "
              f"pools' members: {cold * 1000:.0f} ms")
        print(f"  peer: prometheus-client rendering the same series from plain gauges: "
              f"median {statistics.median(peers) * 1000:.1f} ms, worst "
              f"{max(peers) * 1000:.1f} ms")
        backend.store.close()


if __name__ == "__main__":
    main()
