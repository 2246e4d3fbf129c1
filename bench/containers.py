"""Benchmark: a step's start-up in a container image vs without, on one worker; and the
time from a queued step to a dynamic worker running it.

Usage: .venv/bin/python bench/containers.py [--runs 15] [--dynamic-runs 5]

One OpenSSH worker on loopback, logged into as root (podman runs there as root), and a
fresh Workdeck server. Times launch → finished of a one-line step (`echo started`),
`--runs` times in a row, run plainly and in a busybox image (built here: nothing is
pulled); and, for scale, the engine started on its own from a new process (`podman run
--rm IMAGE true`) and a plain `ssh host true`. Prints the median and the worst of each.

Dynamic workers (as root): a pool with no worker and a provisioner that makes each
worker a network namespace with its own sshd (tests/netns_provisioner.sh, as the tests
use it). Times launch → finished of a one-line step in that pool, the worker made for
it and destroyed after it, `--dynamic-runs` times; and, for scale, the provisioner's
create and destroy on their own.
"""

from __future__ import annotations

import argparse
import getpass
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402
from busybox_image import engine_answers, ensure_image  # noqa: E402
from openssh import OpenSSHServer  # noqa: E402

from console.client import Target, start_server  # noqa: E402
from console.demo import stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402


def timed(action, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return sorted(seconds)


def one_run(http: httpx.Client, runbook: str) -> None:
    run_id = http.post("/api/runs", json={"runbook": runbook,
                                          "environment": "Bench"}).json()["id"]
    while True:
        run = http.get(f"/api/runs/{run_id}").json()
        if run["finished_at"]:
            if run["status"] != "succeeded":
                raise SystemExit(f"run {run_id} of {runbook} {run['status']}: "
                                 f"{run['steps'][0]['reason']}")
            return
        time.sleep(0.005)


def dynamic_runs(http: httpx.Client, root: Path, runs: int) -> tuple[list[float], list[float]]:
    """Launch → finished of a step that has to wait for its worker to be made; and the
    provisioner's own create + destroy, for scale."""
    import os

    script = ROOT / "tests" / "netns_provisioner.sh"
    state = root / "provisioner"
    state.mkdir()
    (state / "tag").write_text(str(os.getpid() % 16))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(state / "client_key")], check=True, stdin=subprocess.DEVNULL)
    command = f"sh {script} {state}"
    http.post("/api/pools", json={"name": "Dynamic Pool"}).raise_for_status()
    http.put("/api/pools/Dynamic Pool/provisioner", json={
        "create": f"{command} create", "destroy": f"{command} destroy", "max": 1,
        "wait_s": 0, "idle_s": 0, "per_minute": 600}).raise_for_status()
    toml = ('name = "Dynamic"\n[[steps]]\nname = "Start"\npool = "Dynamic Pool"\n'
            'script = "echo started"\n')
    http.post("/api/runbooks", json={"toml": toml}).raise_for_status()

    try:
        step = []
        for _ in range(runs):
            step += timed(lambda: one_run(http, "Dynamic"), 1)
            while http.get("/api/pools/Dynamic Pool").json()["members"]:
                time.sleep(0.05)  # destroyed before the next: each run makes its own
        step.sort()
        alone = timed(lambda: (subprocess.run(f"{command} create bench-alone", shell=True,
                                              check=True, capture_output=True),
                               subprocess.run(f"{command} destroy bench-alone", shell=True,
                                              check=True, capture_output=True)), runs)
    finally:
        http.put("/api/pools/Dynamic Pool/provisioner", json={
            "create": f"{command} create", "destroy": f"{command} destroy", "max": 0})
        for left in (state / "workers").glob("*") if (state / "workers").exists() else ():
            subprocess.run(f"{command} destroy {left.name}", shell=True, capture_output=True)
    return step, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--dynamic-runs", type=int, default=5)
    args = parser.parse_args()
    if not engine_answers():
        raise SystemExit("podman does not answer here (.ci/run installs and configures it)")
    image = ensure_image()
    root = Path(tempfile.mkdtemp(prefix="wd-containers-"))
    sshd = OpenSSHServer(root / "sshd")
    sshd.start()
    target = Target(DataDir(root / "data"))
    start_server(target)
    user = getpass.getuser()
    try:
        transport = httpx.HTTPTransport(uds=str(target.data_dir.socket))
        with httpx.Client(transport=transport, base_url="http://workdeck", timeout=60) as http:
            http.put("/api/settings", json={"builtin_worker": False})
            http.post("/api/workers", json={
                "name": "bench-worker-01", "host": sshd.host, "port": sshd.port,
                "user": user, "key_path": str(sshd.client_key), "pools": ["Bench Pool"],
                "trust_host_key": True}).raise_for_status()
            http.post("/api/checks", json={})
            http.post("/api/environments", json={"name": "Bench"})
            for name, extra in (("Plain", ""), ("Contained", f'container = "{image}"\n')):
                toml = (f'name = "{name}"\n[[steps]]\nname = "Start"\npool = "Bench Pool"\n'
                        f'{extra}script = "echo started"\n')
                http.post("/api/runbooks", json={"toml": toml}).raise_for_status()
            one_run(http, "Plain")  # the connection is open, as on a busy server
            plain = timed(lambda: one_run(http, "Plain"), args.runs)
            contained = timed(lambda: one_run(http, "Contained"), args.runs)
            dynamic, provisioner = dynamic_runs(http, root, args.dynamic_runs)
        engine = timed(lambda: subprocess.run(["podman", "run", "--rm", image, "true"],
                                              check=True, capture_output=True), args.runs)
        ssh = timed(lambda: subprocess.run(
            ["ssh", "-p", str(sshd.port), "-i", str(sshd.client_key), "-o",
             "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
             "LogLevel=ERROR", f"{user}@{sshd.host}", "true"], check=True), args.runs)
    finally:
        stop_server(target)
        sshd.stop()

    def said(seconds: list[float]) -> str:
        return f"{statistics.median(seconds):6.3f} s median, {seconds[-1]:6.3f} s worst"

    print(f"a one-line step on a loopback OpenSSH worker, {args.runs} runs each "
          "(launch → finished):")
    print(f"  plain step                  {said(plain)}")
    print(f"  in a container (podman)     {said(contained)}   +"
          f"{statistics.median(contained) - statistics.median(plain):.3f} s at the median")
    print(f"  podman run --rm IMAGE true  {said(engine)}   (the engine from a new process)")
    print(f"  ssh host true               {said(ssh)}   (a new connection each time)")
    print(f"\na one-line step in a pool with no worker, {args.dynamic_runs} runs (launch → "
          "finished; a dynamic worker made for it, checked, given the step):")
    print(f"  queued step → dynamic worker ran it   {said(dynamic)}")
    print(f"  the provisioner alone (create+destroy) {said(provisioner)}   (a network "
          "namespace with its own sshd)")


if __name__ == "__main__":
    main()
