"""Benchmark: what people and tokens cost.

Usage: .venv/bin/python bench/auth.py [--requests 400] [--rounds 5]

A fresh server listening on HTTPS on loopback (its own certificate), with 1,000 people
holding a token each. Measures:

- a request (`GET /api/server`, a connection kept open) over HTTPS with a token against
  the same request over the Unix socket: the added latency, median and p99;
- the token check alone, in-process (a SHA-256 and a lookup): median and p99;
- as root: the same request over the socket opened to a group (`--socket-group`) from
  another account (`nobody`, mapped to a person by SO_PEERCRED), and that identity check
  alone, in-process;
- the console from start to its first Dashboard frame over HTTPS against the socket
  (each in its own process, `--rounds` times);
- a logged-in console's push stream while 500 failed logins a second arrive from
  another address: how late each change reaches it, with and without the flood.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from openssh import free_port  # noqa: E402

from console.client import Client, Target, start_server  # noqa: E402
from console.demo import stop_server  # noqa: E402
from wire.datadir import DataDir  # noqa: E402

PEOPLE = 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def said(values: list[float], unit: float = 1000, name: str = "ms") -> str:
    return (f"{statistics.median(values) * unit:7.2f} {name} median, "
            f"{percentile(values, 0.99) * unit:7.2f} {name} p99")


def timed_requests(http: httpx.Client, count: int) -> list[float]:
    http.get("/api/server").raise_for_status()  # the connection is open
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        http.get("/api/server").raise_for_status()
        seconds.append(time.perf_counter() - started)
    return seconds


def token_check(data_dir: DataDir, tokens: list[str]) -> list[float]:
    from backend.people.access import Access
    from backend.store.db import Store

    access = Access(Store(data_dir.database))

    async def measure() -> list[float]:
        await access.authenticate(f"Bearer {tokens[0]}", "10.0.0.1")  # loads the cache
        seconds = []
        for token in tokens:
            started = time.perf_counter()
            await access.authenticate(f"Bearer {token}", "10.0.0.1")
            seconds.append(time.perf_counter() - started)
        return seconds

    return asyncio.run(measure())


PROBE = """
import asyncio, sys, time
started = time.perf_counter()
from pathlib import Path
from console.app import WorkdeckApp
from console.client import Target
from wire.datadir import DataDir

async def main():
    app = WorkdeckApp(Target(DataDir(Path(sys.argv[1])), sys.argv[2] or None))
    async with app.run_test(size=(160, 45)) as pilot:
        while not app.fleet_loaded:
            await asyncio.sleep(0.005)
        await pilot.pause()
        print(time.perf_counter() - started)

asyncio.run(main())
"""


def socket_person_check(data_dir: DataDir, uid: int, count: int) -> list[float]:
    """The identity of a local client from its uid (the kernel's word), in-process."""
    from backend.people.access import Access
    from backend.store.db import Store

    access = Access(Store(data_dir.database))

    async def measure() -> list[float]:
        await access.local(uid)  # loads the cache
        seconds = []
        for _ in range(count):
            started = time.perf_counter()
            await access.local(uid)
            seconds.append(time.perf_counter() - started)
        return seconds

    return asyncio.run(measure())


def requests_as(uid: int, gid: int, socket_path: str, count: int) -> list[float]:
    """Timed requests over the socket from a child process that is another account."""
    import json

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            transport = httpx.HTTPTransport(uds=socket_path)
            with httpx.Client(transport=transport, base_url="http://workdeck") as local:
                seconds = timed_requests(local, count)
            os.write(write, json.dumps(seconds).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(answer)


def first_frame(data_dir: DataDir, server: str, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, str(data_dir.root), server],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def stream_lag(url: str, token: str, context: ssl.SSLContext, data_dir: DataDir,
               changes: int, flood: bool) -> list[float]:
    """How late each change reaches a follower of the push stream over HTTPS."""
    import json

    sent: dict[str, float] = {}
    lags: list[float] = []
    refused = [0, 0.0]  # failed logins answered, and over how many seconds
    ready = threading.Event()
    stop = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{url}/api/events", verify=context, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as stream:
            for line in stream.iter_lines():
                ready.set()
                if not line.startswith("data: ") or "bench-pool" not in line:
                    continue
                for change in json.loads(line[6:]) if line[6:].startswith("[") else []:
                    note = (change.get("data") or {}).get("description", "")
                    if note in sent:
                        lags.append(time.perf_counter() - sent.pop(note))
                if stop.is_set() and not sent:
                    return

    def hammer() -> None:
        # 500 a second, refused, counted, then slowed (429).
        with httpx.Client(base_url=url, verify=context, timeout=10) as http:
            began = time.perf_counter()
            while not stop.is_set():
                started = time.perf_counter()
                for _ in range(50):
                    with contextlib.suppress(httpx.HTTPError):
                        http.get("/api/server", headers={"Authorization": "Bearer wd_x"})
                        refused[0] += 1
                time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))
            refused[1] = time.perf_counter() - began

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    ready.wait(30)
    flooder = threading.Thread(target=hammer, daemon=True)
    if flood:
        flooder.start()
        time.sleep(1)
    with Client(Target(data_dir)) as client:
        for index in range(changes):
            note = f"change {index} {flood}"
            sent[note] = time.perf_counter()
            client.put("/api/pools/bench-pool", {"description": note})
            time.sleep(0.05)
    stop.set()
    reader.join(30)
    if flood:
        flooder.join(30)
        print(f"  (the flood: {refused[0] / refused[1]:.0f} failed logins a second answered)")
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wd-auth-"))
    target = Target(DataDir(root / "data"))
    port = free_port()
    # As root, the socket is opened to nobody's group too: nobody is a person there.
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    shared = []
    if nobody is not None:
        root.chmod(0o711)
        shared = ["--socket-group", grp.getgrgid(nobody.pw_gid).gr_name]
    start_server(target, extra_args=["--listen", f"127.0.0.1:{port}", *shared])
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(target.data_dir.root / "tls-cert.pem"))
    try:
        with Client(target) as client:
            client.post("/api/pools", {"name": "bench-pool"})
            tokens = []
            for index in range(PEOPLE):
                name = f"person-{index:04d}"
                client.post("/api/people", {"name": name})
                client.post(f"/api/people/{name}/grants", {"role": "admin"})
                tokens.append(client.post("/api/tokens", {"person": name})["token"])
        transport = httpx.HTTPTransport(uds=str(target.data_dir.socket))
        with httpx.Client(transport=transport, base_url="http://workdeck") as local:
            socket_s = timed_requests(local, args.requests)
        with httpx.Client(base_url=url, verify=context,
                          headers={"Authorization": f"Bearer {tokens[7]}"}) as remote:
            tls_s = timed_requests(remote, args.requests)
        check_s = token_check(target.data_dir, tokens)
        person_s: list[float] = []
        person_check_s: list[float] = []
        if nobody is not None:
            with Client(target) as client:
                client.patch("/api/people/person-0001", {"os_user": "nobody"})
            person_s = requests_as(nobody.pw_uid, nobody.pw_gid,
                                   str(target.data_dir.socket), args.requests)
            person_check_s = socket_person_check(target.data_dir, nobody.pw_uid,
                                                 args.requests)
        env = {**os.environ, "WORKDECK_TOKEN": tokens[3],
               "SSL_CERT_FILE": str(target.data_dir.root / "tls-cert.pem")}
        frames_socket = [first_frame(target.data_dir, "", env) for _ in range(args.rounds)]
        frames_tls = [first_frame(target.data_dir, url, env) for _ in range(args.rounds)]
        quiet = stream_lag(url, tokens[5], context, target.data_dir, 60, flood=False)
        flooded = stream_lag(url, tokens[5], context, target.data_dir, 60, flood=True)
    finally:
        stop_server(target)

    print(f"{args.requests} requests each, GET /api/server on an open connection:")
    print(f"  over the Unix socket              {said(socket_s)}")
    print(f"  over HTTPS with a token           {said(tls_s)}")
    print(f"  added                             "
          f"{(statistics.median(tls_s) - statistics.median(socket_s)) * 1000:7.2f} ms median, "
          f"{(percentile(tls_s, .99) - percentile(socket_s, .99)) * 1000:7.2f} ms p99")
    print(f"the token check alone ({PEOPLE} people)  {said(check_s, 1e6, 'µs')}")
    if person_s:
        print(f"  over the socket as nobody (a person by SO_PEERCRED) {said(person_s)}")
        print(f"  that identity check alone         {said(person_check_s, 1e6, 'µs')}")
    print(f"console start → first Dashboard frame, {args.rounds} rounds:")
    print(f"  over the Unix socket              {statistics.median(frames_socket):6.3f} s "
          f"median, {max(frames_socket):6.3f} s worst")
    print(f"  over HTTPS                        {statistics.median(frames_tls):6.3f} s median, "
          f"{max(frames_tls):6.3f} s worst (+"
          f"{statistics.median(frames_tls) - statistics.median(frames_socket):.3f} s)")
    print("a change reaching a console's push stream over HTTPS:")
    print(f"  quiet                             {said(quiet)}")
    print(f"  with 500 failed logins a second   {said(flooded)}")


if __name__ == "__main__":
    main()
