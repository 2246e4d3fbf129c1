"""The demo's provisioner: each dynamic worker it makes is an SSH server of its own (a
process serving on a new loopback port with a new host key), as a cloud would make a
machine.

    python -m backend.demo.provision FOLDER create NAME   prints the worker's JSON word
    python -m backend.demo.provision FOLDER destroy NAME

FOLDER is the demo's data directory's `dynamic` folder. A worker's process ends with
`destroy`, or by itself once the demo server that made it is gone (it watches the data
directory's lock, which the server holds for its whole life).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncssh

from backend.demo.sshd import LocalSSHServer
from wire.datadir import DataDir
from wire.serverlock import held

# A new worker's server answers within this, or create fails: under the provisioner's
# timeout (30 s), and long, since a loaded machine starts a Python process slowly.
READY_S = 25.0


def create(folder: Path, name: str) -> int:
    key_path = folder.parent / "keys" / "demo_ed25519"
    if not key_path.exists():
        print("the demo's client key is missing", file=sys.stderr)
        return 1
    here = folder / name
    here.mkdir(parents=True)
    # Its own session, its output to a file: it outlives this command, which must not
    # keep the provisioner's output open.
    with (here / "server.log").open("ab") as log:
        subprocess.Popen([sys.executable, "-m", "backend.demo.provision", str(folder), "serve",
                          name], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    word = here / "word.json"
    deadline = time.monotonic() + READY_S
    while not word.exists():
        if time.monotonic() > deadline:
            print(f"the SSH server of {name} did not start", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(word.read_text())
    return 0


def destroy(folder: Path, name: str) -> int:
    here = folder / name
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int((here / "pid").read_text()), signal.SIGTERM)
    for path in sorted(here.glob("*"), reverse=True) if here.exists() else ():
        path.unlink()
    with contextlib.suppress(FileNotFoundError):
        here.rmdir()
    return 0


async def serve(folder: Path, name: str) -> None:
    here = folder / name
    key_path = folder.parent / "keys" / "demo_ed25519"
    client_key = asyncssh.read_private_key(str(key_path))
    server = await LocalSSHServer(
        folder.parent / "fleet" / name,
        authorized_keys=[client_key.export_public_key("openssh").decode().strip()]).start()
    (here / "pid").write_text(str(os.getpid()))
    word = {"host": server.host, "port": server.port, "user": "deploy",
            "key": str(key_path), "host_key": server.host_public_key}
    (here / "word.tmp").write_text(json.dumps(word))
    (here / "word.tmp").rename(here / "word.json")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    data_dir = DataDir(folder.parent)
    while not stop.is_set() and held(data_dir):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)
    await server.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("create", "destroy", "serve"):
        print("usage: python -m backend.demo.provision FOLDER create|destroy NAME",
              file=sys.stderr)
        return 2
    folder, action, name = Path(argv[0]), argv[1], argv[2]
    if action == "serve":
        asyncio.run(serve(folder, name))
        return 0
    return (create if action == "create" else destroy)(folder, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
