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

    def ensure(self) -> None:
        """Create the directory, private to this account (0700), as the design requires."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            mode = stat.S_IMODE(self.root.stat().st_mode)
            if mode != 0o700:
                self.root.chmod(0o700)
        except OSError as exc:
            raise DataDirError(
                f"Cannot use the data directory {self.root}: {exc.strerror or exc}."
            ) from exc
