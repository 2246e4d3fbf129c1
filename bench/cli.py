"""Benchmark: how fast the command line answers, each command a whole process.

Usage: .venv/bin/python bench/cli.py [--runs 7] [--workers 200]

Starts a server on a fresh data directory, registers N workers (pointing at a closed
loopback port: listing them needs no SSH), then times, each as its own process:
`workdeck --help` (goal under 0.25 s), `workdeck worker list` (goal under 0.4 s with
200 workers), `workdeck worker list --json` and `workdeck runs list`. Prints the median
and the worst of the runs.

Not yet here: `check --json` over healthy workers beside `ansible -m raw` and
`runs log` of a 1,000,000-line run beside plain `ssh` (bench/health.py and
bench/logs.py time the server's side of those).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from console.client import Client, Target, start_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

WORKDECK = [sys.executable, "-m", "console.cli"]


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([*WORKDECK, *args], capture_output=True, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"workdeck {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workers", type=int, default=200)
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


if __name__ == "__main__":
    main()
