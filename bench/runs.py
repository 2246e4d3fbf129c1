"""Benchmark: many runs queued onto few slots, every log line kept, beside plain ssh.

Usage: .venv/bin/python bench/runs.py [--runs 40] [--slots 4] [--rounds 3]

Launches `--runs` runs at once of a one-step runbook (echo start; sleep 0.2; echo end)
onto a pool of `--slots` slots on a loopback OpenSSH worker, and times launch → every
run finished; then checks that each run succeeded with its whole log (start, end and
its own closing line), which is the promise that used to break under this load. The
peer is the same commands through `ssh host cmd`, `--slots` at a time (xargs -P). Each
round is printed; the figure is the median of the rounds, with the worst beside it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402
from openssh import OpenSSHServer  # noqa: E402
from rig import start_rig  # noqa: E402

from console.demo import stop_server  # noqa: E402
from wire.logcodec import expand  # noqa: E402

SCRIPT = "echo start; sleep 0.2; echo end"


def plain_ssh(sshd: OpenSSHServer, user: str, runs: int, slots: int) -> float:
    ssh = (f"ssh -p {sshd.port} -i {sshd.client_key} -o StrictHostKeyChecking=no "
           f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR {user}@{sshd.host} "
           f"'{SCRIPT}'")
    started = time.perf_counter()
    subprocess.run(f"seq {runs} | xargs -P {slots} -I{{}} {ssh}", shell=True, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def log_texts(http: httpx.Client, run_id: int) -> list[str]:
    from console.client import SSEParser

    parser = SSEParser()
    texts: list[str] = []
    with http.stream("GET", f"/api/runs/{run_id}/log", timeout=None) as response:
        for line in response.iter_lines():
            item = parser.feed(line)
            if item and item[0] == "chunks":
                texts += [entry["text"] for chunk in item[1] for entry in expand(chunk)]
            elif item and item[0] == "end":
                break
    return texts


def one_round(http: httpx.Client, runs: int) -> tuple[float, int]:
    """Seconds from launching `runs` runs to the last one finished; runs with a gap."""
    started = time.perf_counter()
    ids = [http.post("/api/runs", json={"runbook": "Start and end",
                                        "environment": "Bench"}).json()["id"]
           for _ in range(runs)]
    pending = set(ids)
    while pending:
        listed = http.get("/api/runs", params={"limit": runs * 4}).json()
        pending -= {r["id"] for r in listed if r["finished_at"]}
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    broken = 0
    for run_id in ids:
        run = http.get(f"/api/runs/{run_id}").json()
        texts = log_texts(http, run_id)
        whole = "start" in texts and "end" in texts and texts[-1].startswith(
            "step 1 succeeded")
        broken += run["status"] != "succeeded" or not whole
    return elapsed, broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rig = start_rig("wd-runs-")
    user, sshd, target = rig.user, rig.sshd, rig.target
    try:
        with rig.http() as http:
            http.put("/api/settings", json={"builtin_worker": False})
            # Two workers on the one sshd, so that the slots are spread as in a pool.
            for number in (1, 2):
                http.post("/api/workers", json={
                    "name": f"bench-worker-0{number}", "host": sshd.host, "port": sshd.port,
                    "user": user, "key_path": str(sshd.client_key), "pools": ["Bench Pool"],
                    "capacity": max(1, args.slots // 2),
                    "trust_host_key": True}).raise_for_status()
            http.post("/api/checks", json={})
            http.post("/api/environments", json={"name": "Bench"})
            toml = (f'name = "Start and end"\n[[steps]]\nname = "Work"\n'
                    f'pool = "Bench Pool"\nscript = "{SCRIPT}"\n')
            http.post("/api/runbooks", json={"toml": toml}).raise_for_status()
            rounds = []
            for number in range(1, args.rounds + 1):
                ssh_s = plain_ssh(sshd, user, args.runs, args.slots)
                deck_s, broken = one_round(http, args.runs)
                rounds.append((deck_s, ssh_s, broken))
                print(f"round {number}: workdeck {deck_s:5.2f} s, plain ssh {ssh_s:5.2f} s, "
                      f"runs with a gap in their log: {broken}", flush=True)
    finally:
        stop_server(target)
        sshd.stop()
    deck = sorted(r[0] for r in rounds)
    ssh = sorted(r[1] for r in rounds)
    print(f"{args.runs} runs through {args.slots} slots, {args.rounds} rounds "
          f"(median, worst):")
    print(f"  workdeck launch → all finished:  {statistics.median(deck):5.2f} s, "
          f"{deck[-1]:.2f} s  ({statistics.median(deck) / args.runs * args.slots * 1000:.0f}"
          " ms a run per slot)")
    print(f"  plain ssh, {args.slots} at a time:      {statistics.median(ssh):5.2f} s, "
          f"{ssh[-1]:.2f} s")
    print(f"  runs with a line missing: {sum(r[2] for r in rounds)} of "
          f"{args.runs * args.rounds}")


if __name__ == "__main__":
    main()
