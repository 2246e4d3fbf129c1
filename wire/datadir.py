"""Where a Workdeck server keeps its files, and how clients find it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs


class DataDirError(Exception):
    """The data directory cannot be used; the message says why in one sentence."""


def default_data_dir() -> Path:
    env = os.environ.get("WORKDECK_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("workdeck", appauthor=False))


MARKER = "WORKDECK-DATA-DIR"  # says "Workdeck made this folder": only such a folder is made 0700
# Files an earlier Workdeck (before the marker) left in its data directory.
_KNOWN = ("workdeck.db", "secret.key")


@dataclass(frozen=True)
class DataDir:
    """The files of one Workdeck installation, all under one private directory."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> DataDir:
        root = Path(explicit).expanduser() if explicit else default_data_dir()
        return cls(root.absolute())

    @property
    def database(self) -> Path:
        return self.root / "workdeck.db"

    @property
    def socket(self) -> Path:
        return self.root / "server.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "server.pid"

    @property
    def lock_file(self) -> Path:
        """Held (flock) by the one server of this directory for its whole life."""
        return self.root / "server.lock"

    @property
    def server_file(self) -> Path:
        """Where the running server listens (JSON), so that clients reach it there."""
        return self.root / "server.json"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def token_file(self) -> Path:
        return self.root / "api-token"

    @property
    def secret_key(self) -> Path:
        return self.root / "secret.key"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def is_workdeck(self) -> bool:
        """The directory is one Workdeck made (or is new and empty)."""
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise DataDirError(
                f"Cannot use the data directory {self.root}: {exc.strerror or exc}.") from exc
        if not entries or (self.root / MARKER).is_file():
            return True
        return any((self.root / name).is_file() for name in _KNOWN)

    def ensure(self) -> None:
        """Create the directory, private to this account (0700), as the design requires.

        An existing folder that Workdeck did not make (a home directory, a project) is
        refused rather than taken over: its mode and files are not Workdeck's to change.
        """
        if not self.is_workdeck():
            raise DataDirError(
                f"{self.root} is not empty and is not a Workdeck data directory; give "
                "--data-dir an empty folder or one Workdeck made.")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            marker = self.root / MARKER
            if not marker.exists():
                marker.write_text("This folder is a Workdeck data directory.\n")
            mode = stat.S_IMODE(self.root.stat().st_mode)
            if mode != 0o700:
                self.root.chmod(0o700)
        except OSError as exc:
            raise DataDirError(
                f"Cannot use the data directory {self.root}: {exc.strerror or exc}."
            ) from exc
