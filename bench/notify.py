"""Benchmark: what notifications add to a run, with one receiver that never answers.

Usage: .venv/bin/python bench/notify.py [--runs 30] [--rounds 3] [--gap 0.25]

A one-step runbook that fails (so that every notification wants its end) on a loopback
OpenSSH worker, run --runs times one after the other: without notifications, then with
five notifications of run-failed, four answering at once and one that never answers
(each attempt waits out its 10 s limit, retried). Back to back (the default), the
notifications of one run are sent while the next runs, on the same two cores; with
--gap, runs come that far apart. Rounds alternate the two, so that the
machine's drift falls on both. A run's time is the server's own, launch to finished
(`finished_at - created_at`). Also: how soon after a run's end the answering receivers
had its body. The peer, for scale: the same run's time with nothing told at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402
from rig import start_rig  # noqa: E402
from test_notifications import Receiver  # noqa: E402

from console.demo import stop_server  # noqa: E402


def run_times(http: httpx.Client, runs: int, gap: float = 0.0
              ) -> tuple[list[float], list[float]]:
    """Each run's launch → finished (s), and its finish as a Unix time; `gap`: seconds
    between a run's end and the next launch."""
    took, ended = [], []
    for _ in range(runs):
        time.sleep(gap)
        run_id = http.post("/api/runs", json={"runbook": "Fail", "environment": "Bench"}
                           ).json()["id"]
        while not (run := http.get(f"/api/runs/{run_id}").json())["finished_at"]:
            time.sleep(0.005)
        start = datetime.fromisoformat(run["created_at"])
        end = datetime.fromisoformat(run["finished_at"])
        took.append((end - start).total_seconds())
        ended.append(end.timestamp())
    return took, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.0,
                        help="Seconds between a run's end and the next launch (0: back to "
                        "back, the notifications of one run beside the next).")
    args = parser.parse_args()
    receiver = Receiver()
    arrived: dict[int, float] = {}  # run id: when an answering receiver had its body

    class Stamped(list):  # type: ignore[type-arg]
        def append(self, item: tuple[str, dict[str, str], bytes]) -> None:
            if item[0] == "/ok":
                arrived.setdefault(json.loads(item[2])["run"]["id"], time.time())
            super().append(item)

    receiver.requests = Stamped()
    rig = start_rig("wd-notify-")
    without: list[float] = []
    with_them: list[float] = []
    told_after: list[float] = []
    try:
        with rig.http() as http:
            http.put("/api/settings", json={"builtin_worker": False})
            http.post("/api/workers", json={
                "name": "bench-worker", "host": rig.sshd.host, "port": rig.sshd.port,
                "user": rig.user, "key_path": str(rig.sshd.client_key),
                "pools": ["Bench Pool"], "capacity": 2, "trust_host_key": True}
            ).raise_for_status()
            http.post("/api/checks", json={})
            http.post("/api/environments", json={"name": "Bench"})
            http.post("/api/runbooks", json={"toml": (
                'name = "Fail"\n[[steps]]\nname = "Fail"\npool = "Bench Pool"\n'
                'script = "echo failing; exit 1"\n')}).raise_for_status()
            run_times(http, 3)  # warm: connections made, caches filled
            for number in range(1, args.rounds + 1):
                took, _ended = run_times(http, args.runs, args.gap)
                without += took
                for index in range(5):
                    path = "/hang" if index == 4 else "/ok"
                    http.post("/api/notifications", json={
                        "name": f"n{index}", "url": f"{receiver.url}{path}",
                        "events": ["run-failed"]}).raise_for_status()
                took, ended = run_times(http, args.runs, args.gap)
                with_them += took
                ids = [r["id"] for r in http.get("/api/runs", params={"limit": args.runs}
                                                 ).json()]
                deadline = time.time() + 30
                while time.time() < deadline and not all(i in arrived for i in ids):
                    time.sleep(0.05)
                by_id = dict(zip(sorted(ids), ended, strict=True))
                told_after += [arrived[i] - by_id[i] for i in ids if i in arrived]
                for index in range(5):
                    http.delete(f"/api/notifications/n{index}")
                plain = statistics.median(without[-args.runs:]) * 1000
                print(f"round {number}: without {plain:.1f} ms, with five (one never "
                      f"answering) {statistics.median(took) * 1000:.1f} ms (medians)",
                      flush=True)
    finally:
        stop_server(rig.target)
        rig.sshd.stop()
        receiver.close()

    def cut(values: list[float]) -> str:
        ordered = sorted(values)
        return (f"median {statistics.median(ordered) * 1000:6.1f} ms, p90 "
                f"{ordered[int(len(ordered) * 0.9)] * 1000:6.1f} ms, worst "
                f"{ordered[-1] * 1000:6.1f} ms")

    print(f"{len(without)} runs each way, launch → finished, "
          + (f"{args.gap:g} s apart:" if args.gap else "back to back:"))
    print(f"  peer, no notifications:               {cut(without)}")
    print(f"  five notifications, one never answers: {cut(with_them)}")
    added = (statistics.median(with_them) - statistics.median(without)) * 1000
    print(f"  added (median): {added:+.1f} ms  (goal: under 5 ms)")
    if told_after:
        print(f"  the answering receivers had each failure: {cut(told_after)} after its end")


if __name__ == "__main__":
    main()
