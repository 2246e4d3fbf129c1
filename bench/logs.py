"""Benchmark: one step prints 1,000,000 lines (about 80 MB), beside plain `ssh host cmd`.

Usage: .venv/bin/python bench/logs.py [--lines 1000000]

Times launch → run finished, every line stored and received by a client following the
log, against `ssh host 'the same command' > /dev/null` on the same OpenSSH server. Also
reports the peak memory of the server and of a following console (a real console in its
own process, following the run's view), and the slowest keystroke answered by that
console while the flood streams.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402
from openssh import OpenSSHServer  # noqa: E402
from rig import start_rig  # noqa: E402

from console.client import SSEParser, Target  # noqa: E402
from console.demo import stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402


def command(lines: int) -> str:
    # About 80 bytes a line, each one different.
    return (f"seq 1 {lines} | sed 's/$/ the quick brown fox jumps over the lazy dog "
            "0123456789 abcdefgh/'")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def plain_ssh(sshd: OpenSSHServer, user: str, lines: int) -> float:
    args = ["ssh", "-p", str(sshd.port), "-i", str(sshd.client_key), "-o",
            "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
            "LogLevel=ERROR", f"{user}@{sshd.host}", command(lines)]
    started = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def follow(http: httpx.Client, run_id: int, result: dict) -> None:
    count = 0
    parser = SSEParser()
    with http.stream("GET", f"/api/runs/{run_id}/log", params={"follow": "true"},
                     timeout=None) as response:
        for line in response.iter_lines():
            item = parser.feed(line)
            if item and item[0] == "chunks":
                count += sum(c["last_seq"] - c["first_seq"] + 1 for c in item[1]
                             if c["stream"] == "stdout")
            elif item and item[0] == "end":
                break
    result["lines"] = count
    result["done"] = time.perf_counter()


def flood_once(http: httpx.Client) -> tuple[float, str, int]:
    """Launch the flood and follow it; (seconds to the last line, status, lines seen)."""
    started = time.perf_counter()
    run = http.post("/api/runs", json={"runbook": "Flood", "environment": "Bench"}).json()
    result: dict = {}
    follower = threading.Thread(target=follow, args=(http, run["id"], result))
    follower.start()
    follower.join()
    status = http.get(f"/api/runs/{run['id']}").json()["status"]
    return result["done"] - started, status, result["lines"]



def console_probe(data_dir: str, run_id: int) -> None:
    """Run in its own process: a console on the run's view; keystroke latency, memory."""
    import asyncio

    from textual import events

    from console.app import WorkdeckApp
    from console.screens.run import RunScreen

    async def main() -> None:
        app = WorkdeckApp(Target(DataDir(Path(data_dir))))
        latencies: list[float] = []
        async with app.run_test(size=(160, 45)) as pilot:
            while not app.fleet_loaded:
                await pilot.pause(0.05)
            print("ready", flush=True)
            while str(run_id) not in app.fleet.runs:  # the run is launched once we are up
                await pilot.pause(0.02)
            opened = time.perf_counter()
            screen = RunScreen(run_id)
            app.push_screen(screen)
            while not (screen.is_mounted and screen.log_view.entries):  # open, lines shown
                await pilot.pause(0.01)
            opened = time.perf_counter() - opened
            # Time from a key arriving to its action running: the key goes in as the
            # terminal would post it, and the view's own action notes when it ran.
            handled = asyncio.Event()
            original = screen.action_follow

            def noted() -> None:
                original()
                handled.set()

            screen.action_follow = noted  # type: ignore[method-assign]
            while not (screen.run and screen.run.get("finished_at")):
                handled.clear()
                started = time.perf_counter()
                app.post_message(events.Key("f", "f"))
                await handled.wait()
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)  # a fast typist: 50 keys a second
        print(json.dumps({"worst_key_ms": max(latencies) * 1000,
                          "median_key_ms": statistics.median(latencies) * 1000,
                          "keys": len(latencies), "open_ms": opened * 1000,
                          "peak_mb": peak_rss_mb(os.getpid())}))

    if os.environ.get("WORKDECK_BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("asyncio.run(main())", globals(), locals(),
                        os.environ["WORKDECK_BENCH_PROFILE"])
    else:
        asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--floods", type=int, default=5,
                        help="floods with one follower, for the throughput figure")
    parser.add_argument("--console-probe", nargs=2, metavar=("DATA_DIR", "RUN_ID"))
    args = parser.parse_args()
    if args.console_probe:
        console_probe(args.console_probe[0], int(args.console_probe[1]))
        return
    rig = start_rig("wd-logs-")
    user, sshd, target = rig.user, rig.sshd, rig.target
    try:
        ssh_s = min(plain_ssh(sshd, user, args.lines) for _ in range(3))
        with rig.http() as http:
            http.put("/api/settings", json={"builtin_worker": False})
            http.post("/api/workers", json={
                "name": "bench-worker", "host": sshd.host, "port": sshd.port, "user": user,
                "key_path": str(sshd.client_key), "pools": ["Bench Pool"],
                "trust_host_key": True}).raise_for_status()
            http.post("/api/checks", json={})
            http.post("/api/environments", json={"name": "Bench"})
            toml = (f'name = "Flood"\n[[steps]]\nname = "Print"\npool = "Bench Pool"\n'
                    f'script = "{command(args.lines)}"\n')
            http.post("/api/runbooks", json={"toml": toml}).raise_for_status()
            # First floods with one following client: the throughput figure (the median,
            # since two shared cores make single runs noisy).
            floods = [flood_once(http) for _ in range(args.floods)]
            times = sorted(elapsed for elapsed, _status, _lines in floods)
            server_pid = http.get("/api/server").json()["pid"]
            first_mb = peak_rss_mb(server_pid)
            # Then the same flood with a real console following the run in its own
            # process (up and watching before it starts): memory and keystrokes.
            probe = subprocess.Popen([sys.executable, __file__, "--console-probe",
                                      str(target.data_dir.root), str(args.floods + 1)],
                                     stdout=subprocess.PIPE, text=True)
            assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
            with_console, _status, _lines = flood_once(http)
            server_mb = peak_rss_mb(server_pid)
            console = json.loads(probe.communicate(timeout=300)[0].strip().splitlines()[-1])
        median = statistics.median(times)
        print(f"{args.lines} lines; runs {', '.join(sorted({f[1] for f in floods}))}; "
              f"lines reaching the follower: {', '.join(str(f[2]) for f in floods)}")
        print(f"  plain ssh > /dev/null (best of 3):  {ssh_s:6.2f} s")
        print(f"  workdeck launch → followed, median: {median:6.2f} s  "
              f"({median / ssh_s:.1f}x ssh; best {times[0]:.2f} s, worst {times[-1]:.2f} s, "
              f"{len(times)} floods)")
        print(f"  the same with a console following:  {with_console:6.2f} s")
        print(f"  server peak memory:                 {first_mb:6.0f} MB after the floods "
              f"above, {server_mb:.0f} MB with the console's too")
        print(f"  console peak memory:                {console['peak_mb']:6.0f} MB")
        print(f"  keystrokes during the flood:        {console['worst_key_ms']:6.0f} ms "
              f"slowest, {console['median_key_ms']:.0f} ms median ({console['keys']} keys), "
              f"after the Run view opened in {console['open_ms']:.0f} ms")
    finally:
        stop_server(target)
        sshd.stop()


if __name__ == "__main__":
    main()
