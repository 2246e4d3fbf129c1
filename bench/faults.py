"""Benchmark: the fault table, with figures.

Usage: sudo .venv/bin/python bench/faults.py [--rounds 3]   (root: tmpfs, accounts)

Each row is a fault made for real, measured --rounds times (the median, and the worst
beside it):

- kill -9 of the server mid-step on an OpenSSH worker (the step printing numbered lines
  all along): lines lost (holes before the last line stored; goal 0), and the time from
  the restarted server answering to no process of the step left on the worker (goal
  under 15 s);
- the data directory (a tmpfs) filling up during a 1,000,000-line step, then freed: lines
  lost (goal 0), and the time from the space being freed to a new run succeeding (goal
  under 5 s);
- the slowest event-loop callback by its own CPU time (backend/loopwatch.py, with
  asyncio's debug mode, which itself slows the loop) during a health-check sweep of
  1,000 workers and during a 1,000,000-line flood (goal under 100 ms);
- a 1,000,000-line flood's time with 3 secrets masked against none (goal: within 10 %).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402
from health import bench_account  # noqa: E402
from openssh import OpenSSHServer  # noqa: E402

from backend import loopwatch  # noqa: E402
from console.client import Client, Target  # noqa: E402
from wire.datadir import DataDir  # noqa: E402
from wire.logcodec import expand  # noqa: E402

QUIET = {"interval_s": 3600, "timeout_s": 5, "disk_free_warning_mb": 0,
         "load_warning_factor": 1000, "history_size": 20, "custom_script": ""}
FLOOD = ("seq 1 1000000 | sed 's/^/line /; s/$/ the quick brown fox jumps over the "
         "lazy dog/'")


class Server:
    """A Workdeck server of its own process on a data directory."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = DataDir(root / "data")
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; return when it answers (time.monotonic())."""
        self.data_dir.ensure()
        log = open(self.data_dir.log_file, "ab")  # noqa: SIM115 - the child's
        self.process = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "--data-dir", str(self.data_dir.root),
             "server"], stdout=log, stderr=log, env=self.env, start_new_session=True)
        log.close()
        with Client(Target(self.data_dir)) as client:
            while not client.alive():
                if self.process.poll() is not None:
                    raise SystemExit(self.data_dir.log_file.read_text()[-2000:])
                time.sleep(0.02)
        return time.monotonic()

    def http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.data_dir.socket)),
                            base_url="http://workdeck", timeout=120)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.data_dir.log_file.read_text(errors="replace")


def wait(predicate: Callable[[], Any], timeout: float = 120, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit("a condition of the benchmark did not hold in time")


def processes(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def numbered(http: httpx.Client, run_id: int) -> list[int]:
    from console.client import SSEParser

    seen: list[int] = []
    parser = SSEParser()
    with http.stream("GET", f"/api/runs/{run_id}/log") as response:
        for line in response.iter_lines():
            item = parser.feed(line)
            if item and item[0] == "chunks":
                for chunk in item[1]:
                    for entry in expand(chunk):
                        words = entry["text"].split()
                        if entry["stream"] == "stdout" and len(words) > 1 and \
                                words[0] == "line" and words[1].isdigit():
                            seen.append(int(words[1]))
    return seen


def holes(numbers: list[int]) -> int:
    """Lines missing before the last one stored (a cut final line aside)."""
    whole = numbers[:-1]
    return (whole[-1] - len(whole)) if whole else 0


def setup(http: httpx.Client, sshd: OpenSSHServer | None, user: str, toml: str) -> None:
    http.put("/api/policy", json=QUIET)
    if sshd is not None:
        http.put("/api/settings", json={"builtin_worker": False})
        http.post("/api/workers", json={
            "name": "bench-worker", "host": sshd.host, "port": sshd.port, "user": user,
            "key_path": str(sshd.client_key), "pools": ["Bench Pool"],
            "trust_host_key": True}).raise_for_status()
    http.post("/api/checks", json={}).raise_for_status()
    http.post("/api/environments", json={"name": "Bench"})
    http.post("/api/runbooks", json={"toml": toml}).raise_for_status()


def launch(http: httpx.Client, runbook: str, **variables: str) -> int:
    response = http.post("/api/runs", json={"runbook": runbook, "environment": "Bench",
                                            "variables": variables})
    response.raise_for_status()
    return response.json()["id"]


def finished(http: httpx.Client, run_id: int) -> dict[str, Any] | None:
    run = http.get(f"/api/runs/{run_id}").json()
    return run if run["finished_at"] else None


# ---------------------------------------------------------------- the rows


def kill_9(root: Path, sshd: OpenSSHServer, user: str) -> tuple[int, float]:
    marker = f"{time.time_ns() % 10**8:08d}"
    toml = ('name = "Long"\n[[steps]]\nname = "Count"\npool = "Bench Pool"\nscript = """\n'
            'i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo "line $i"; sleep 0.01; done\n'
            f"sleep 7{marker} & sleep 7{marker}\n" + '"""\n')
    server = Server(root)
    server.start()
    try:
        with server.http() as http:
            setup(http, sshd, user, toml)
            run_id = launch(http, "Long")
            wait(lambda: len(processes(f"sleep 7{marker}")) == 2)
        server.kill()
        answering = server.start()
        wait(lambda: not processes(f"sleep 7{marker}"), timeout=120, every=0.05)
        cleaned = time.monotonic() - answering
        with server.http() as http:
            wait(lambda: finished(http, run_id))
            lost = holes(numbered(http, run_id))
        return lost, cleaned
    finally:
        server.stop()


def disk_full(root: Path) -> tuple[int, float]:
    mount = root / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)],
                   check=True)
    toml = (f'name = "Flood"\n[[steps]]\nname = "Print"\npool = "Default Worker Pool"\n'
            f'script = "{FLOOD}"\n')
    toml_quick = ('name = "Quick"\n[[steps]]\nname = "Quick"\npool = "Default Worker Pool"\n'
                  'script = "echo ok"\n')
    server = Server(mount)
    try:
        server.start()
        with server.http() as http:
            setup(http, None, "", toml)
            http.post("/api/runbooks", json={"toml": toml_quick}).raise_for_status()
            ballast = mount / "ballast"
            left = shutil.disk_usage(mount).free - 15 * 2**20
            with open(ballast, "wb") as out:
                while left > 0:
                    left -= out.write(b"\0" * min(left, 2**24))
            run_id = launch(http, "Flood")
            wait(lambda: http.get("/api/server").json()["store_fault"], timeout=120)
            wait(lambda: not processes("seq 1 1000000"), timeout=120)
            ballast.unlink()
            freed = time.monotonic()
            quick = launch(http, "Quick")
            wait(lambda: (run := finished(http, quick)) and run["status"] == "succeeded",
                 timeout=120)
            working = time.monotonic() - freed
            wait(lambda: finished(http, run_id), timeout=120)
            lost = holes(numbered(http, run_id))
        return lost, working
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def slowest_callbacks(root: Path, sshd: OpenSSHServer, user: str) -> tuple[float, float]:
    server = Server(root, {"PYTHONASYNCIODEBUG": "1", "WORKDECK_SLOW_CALLBACK_S": "0.005"})
    server.start()

    def slowest(since: int) -> float:
        found = re.findall(loopwatch.PATTERN, server.log()[since:])
        return max((float(x) for x in found), default=0.005)

    try:
        with server.http() as http:
            setup(http, sshd, user, (f'name = "Flood"\n[[steps]]\nname = "Print"\n'
                                     f'pool = "Bench Pool"\nscript = "{FLOOD}"\n'))
            key = str(sshd.client_key)
            http.post("/api/workers/import", json={"workers": [
                {"name": f"bench-sweep-{n:04d}", "host": sshd.host,
                 "port": sshd.port if n < 50 else 1, "user": user, "key_path": key,
                 "trust_host_key": True, "pools": [f"Sweep {n % 20:02d} Pool"]}
                for n in range(999)]}).raise_for_status()
            since = len(server.log())
            for _ in range(3):
                http.post("/api/checks", json={}).raise_for_status()
            sweep = slowest(since)
            since = len(server.log())
            run_id = launch(http, "Flood")
            wait(lambda: finished(http, run_id), timeout=300)
            flood = slowest(since)
        return sweep, flood
    finally:
        server.stop()


def masking(root: Path, sshd: OpenSSHServer, user: str) -> tuple[float, float, float]:
    """Median flood times: no secrets; 3 tokens as secrets usually are (random, mixed
    case); 3 lowercase words every byte of which is in the output, the masker's worst."""
    import secrets as random_tokens

    tokens = {name: random_tokens.token_urlsafe(16) for name in ("alpha", "beta", "gamma")}
    words = {"alpha": "quickbrownfox", "beta": "lazydogjumps", "gamma": "overthedog"}
    toml = (f'name = "Plain"\n[[steps]]\nname = "Print"\npool = "Bench Pool"\n'
            f'script = "{FLOOD}"\n')
    masked = ('name = "Masked"\n' + "".join(f"[variables.{n}]\nsensitive = true\n"
                                             for n in tokens)
              + f'[[steps]]\nname = "Print"\npool = "Bench Pool"\n'
              f'script = "{FLOOD}; echo $alpha $beta $gamma"\n')
    server = Server(root)
    server.start()
    try:
        with server.http() as http:
            setup(http, sshd, user, toml)
            http.post("/api/runbooks", json={"toml": masked}).raise_for_status()

            def timed(runbook: str, **variables: str) -> float:
                started = time.monotonic()
                run_id = launch(http, runbook, **variables)
                wait(lambda: finished(http, run_id), timeout=300, every=0.01)
                return time.monotonic() - started

            plain, hidden, worst = [], [], []
            for _ in range(5):  # alternated, so that the machine's moods fall on all
                plain.append(timed("Plain"))
                hidden.append(timed("Masked", **tokens))
                worst.append(timed("Masked", **words))
        return statistics.median(plain), statistics.median(hidden), statistics.median(worst)
    finally:
        server.stop()


def figure(values: list[float], unit: str = "s", worst: Callable = max) -> str:
    median = statistics.median(values)
    fmt = (lambda v: f"{v:.0f}") if unit in ("ms", "lines") else (lambda v: f"{v:.2f}")
    return f"{fmt(median)} {unit} (worst {fmt(worst(values))} {unit}, {len(values)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/faults.py needs root (a tmpfs, an account to log in as)")
    user = bench_account()
    base = Path(tempfile.mkdtemp(prefix="wd-faults-"))
    base.chmod(0o755)
    sshd = OpenSSHServer(base / "sshd")
    sshd.authorized_keys.chmod(0o644)
    sshd.start()
    rows: dict[str, list[float]] = {k: [] for k in (
        "kill_lost", "kill_clean", "full_lost", "full_back", "sweep", "flood", "plain",
        "masked", "worst")}
    try:
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for name, fn, keys in (
                    ("kill -9 mid-step", lambda r: kill_9(r, sshd, user),
                     ("kill_lost", "kill_clean")),
                    ("data directory full", disk_full, ("full_lost", "full_back")),
                    ("slow callbacks", lambda r: slowest_callbacks(r, sshd, user),
                     ("sweep", "flood")),
                    ("masking", lambda r: masking(r, sshd, user),
                     ("plain", "masked", "worst"))):
                root = Path(tempfile.mkdtemp(prefix="wd-fault-", dir=base))
                figures = fn(root)
                for key, value in zip(keys, figures, strict=True):
                    rows[key].append(value)
                print(f"  {name}: {', '.join(f'{v:.3f}' for v in figures)}", flush=True)
                with contextlib.suppress(OSError):
                    shutil.rmtree(root)
        ratio = [m / p for m, p in zip(rows["masked"], rows["plain"], strict=True)]
        worst = [m / p for m, p in zip(rows["worst"], rows["plain"], strict=True)]
        print()
        print("| fault | figure | goal |")
        print("|---|---|---|")
        print(f"| kill -9 mid-step (OpenSSH): lines lost | {figure(rows['kill_lost'], 'lines')}"
              " | 0 |")
        print(f"| kill -9: restart answering → no process of the step left | "
              f"{figure(rows['kill_clean'])} | < 15 s |")
        print(f"| data directory full during a 1M-line step: lines lost | "
              f"{figure(rows['full_lost'], 'lines')} | 0 |")
        print(f"| data directory freed → a new run succeeded | {figure(rows['full_back'])} | "
              "< 5 s |")
        print(f"| slowest event-loop callback's CPU time, 1,000-worker sweep (debug mode) | "
              f"{figure([v * 1000 for v in rows['sweep']], 'ms')} | < 100 ms |")
        print(f"| slowest event-loop callback's CPU time, 1M-line flood (debug mode) | "
              f"{figure([v * 1000 for v in rows['flood']], 'ms')} | < 100 ms |")
        print(f"| 1M-line flood, no secrets | {figure(rows['plain'])} | |")
        print(f"| 1M-line flood, 3 secrets masked (random tokens) | {figure(rows['masked'])} "
              f"({(statistics.median(ratio) - 1) * 100:+.0f} %, worst "
              f"{(max(ratio) - 1) * 100:+.0f} %) | within 10 % |")
        print(f"| 1M-line flood, 3 secrets whose every byte is in the output | "
              f"{figure(rows['worst'])} ({(statistics.median(worst) - 1) * 100:+.0f} %, worst "
              f"{(max(worst) - 1) * 100:+.0f} %) | within 10 % |")
    finally:
        sshd.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
