"""One server per data directory: an exclusive lock held for the server's whole life, and
a note of where it listens, so that clients reach it instead of starting another."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import Any

from wire.datadir import DataDir


class AlreadyRunning(Exception):
    """Another server holds the data directory; the message names it."""


def describe(info: dict[str, Any] | None, data_dir: DataDir) -> str:
    if not info:
        return f"A Workdeck server is already running on {data_dir.root}."
    return (f"A Workdeck server is already running on {data_dir.root} (pid {info.get('pid')}, "
            f"listening on {info.get('listen')}); stop it first (`workdeck server stop`).")


class ServerLock:
    """The data directory's lock, held by this process until it exits."""

    def __init__(self, data_dir: DataDir) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning at once; never waits."""
        fd = os.open(self.data_dir.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(describe(running(self.data_dir), self.data_dir)) from None
        self._fd = fd

    def record(self, listen: list[str]) -> None:
        """Say where this server listens (the first address is the one it was asked for)."""
        info = {"pid": os.getpid(), "listen": listen[0], "addresses": listen,
                "started_at": time.time()}
        path = self.data_dir.server_file
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(info) + "\n")
        partial.chmod(0o600)
        partial.replace(path)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.data_dir.server_file.unlink()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the lock
            self._fd = None


def held(data_dir: DataDir) -> bool:
    """Whether a server holds the data directory's lock now."""
    try:
        fd = os.open(data_dir.lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def running(data_dir: DataDir) -> dict[str, Any] | None:
    """Where the server that holds the lock listens, or None when none holds it."""
    if not held(data_dir):
        return None
    try:
        info = json.loads(data_dir.server_file.read_text())
    except (OSError, ValueError):
        return {}  # held, and still starting: it has not said where it listens yet
    return info if isinstance(info, dict) else {}
