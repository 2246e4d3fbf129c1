"""What a benchmark runs against: a loopback OpenSSH worker and a fresh Workdeck server."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from health import bench_account
from openssh import OpenSSHServer

from console.client import Target, start_server


@dataclass
class Rig:
    user: str  # the account the worker is logged into as (a plain /bin/sh one)
    root: Path
    sshd: OpenSSHServer
    target: Target

    def http(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.target.data_dir.socket))
        return httpx.Client(transport=transport, base_url="http://workdeck", timeout=60)


def start_rig(prefix: str, database: str | None = None) -> Rig:
    """`database`: the server's PostgreSQL URL (default: SQLite in its data directory)."""
    from wire.datadir import DataDir

    user = bench_account()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # the benchmark account's sshd sessions read the key files here
    sshd = OpenSSHServer(root / "sshd")
    sshd.authorized_keys.chmod(0o644)
    sshd.start()
    target = Target(DataDir(root / "data"))
    start_server(target, extra_args=["--database", database] if database else None)
    return Rig(user, root, sshd, target)
