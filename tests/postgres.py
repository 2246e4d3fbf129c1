"""Run a real, throwaway PostgreSQL server on a loopback port for tests and benchmarks.

`initdb` into a temporary directory, as an unprivileged account when run as root (the
server refuses to run as root), and `postgres` on a free port with its socket in that
directory. Each test gets a database of its own (`database()`), made from template0.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import psycopg
from openssh import free_port

__all__ = ["PostgresServer", "find_postgres"]

SUPERUSER = "workdeck"


def find_postgres() -> Path | None:
    """The directory of PostgreSQL's server programs (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    postgres = shutil.which("postgres")
    return Path(postgres).parent if postgres else None


class PostgresServer:
    """One PostgreSQL server of its own, started and stopped by a test."""

    def __init__(self, bin_dir: Path, account: str | None = None,
                 root: Path | None = None, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.account = account  # run as this OS account (required when we are root)
        self.root = root or Path(tempfile.mkdtemp(prefix="wd-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # Tests need no crash safety of the machine's power; benchmarks measure with it
        # (fsync on; commits not waiting for it, as SQLite's synchronous=NORMAL in WAL).
        self.durable = durable
        self._made = 0

    def _as_account(self) -> dict[str, object]:
        return {"user": self.account} if self.account and os.geteuid() == 0 else {}

    def initdb(self) -> None:
        if self.account and os.geteuid() == 0:
            entry = pwd.getpwnam(self.account)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, **self._as_account())  # type: ignore[call-overload]

    def start(self) -> None:
        if not self.data.exists():
            self.initdb()
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
             *(["-c", "synchronous_commit=off"] if self.durable else
               ["-c", "fsync=off", "-c", "full_page_writes=off"]),
             "-c", "max_connections=200"],
            stdout=log, stderr=log, start_new_session=True,
            **self._as_account())  # type: ignore[call-overload]
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start:\n" + self.log()) from None
                time.sleep(0.05)

    def stop(self, mode: signal.Signals = signal.SIGINT) -> None:
        """Stop it: SIGINT is PostgreSQL's fast shutdown (clients are disconnected)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(mode)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return (self.root / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        self._made += 1
        name = name or f"test_{self._made}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
