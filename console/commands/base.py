"""What every command shares: where the server is, and how a refusal is reported."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click

from wire.datadir import DataDir

if TYPE_CHECKING:
    from console.client import Client, Target


class Context:
    """Where the server is; the HTTP client is imported only once a request is made."""

    def __init__(self, data_dir: str | None, server: str | None) -> None:
        self.data_dir = DataDir.resolve(data_dir)
        self.server_url = server
        self._target: Target | None = None
        # How to call workdeck again for this same server, for commands we suggest.
        import shlex

        self.command = "workdeck" + "".join(
            f" {option} {shlex.quote(value)}" for option, value in
            (("--data-dir", data_dir), ("--server", server)) if value)

    @property
    def target(self) -> Target:
        if self._target is None:
            from console.client import Target

            self._target = Target(self.data_dir, self.server_url)
        return self._target

    def client(self) -> Client:
        from console.client import Client, ensure_server

        ensure_server(self.target)
        return Client(self.target)


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"workdeck: {message}", err=True)
    sys.exit(code)




ENGINES_TO_SET = click.Choice(["podman", "docker", "any"])


def engine_setting(engine: str | None) -> str | None:
    """`--engine` of `worker set` and `pool set` as the API takes it: None leaves it as it
    is, "any" is "" (the first engine that answers there)."""
    return None if engine is None else "" if engine == "any" else engine


def engine_said(engine: str) -> str:
    return engine or "the first engine that answers"


class Renamed(click.Option):
    """An option whose first name is its name; the names after it are what it was called
    one release ago: still understood, no longer shown in `--help` (README, "Changed")."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        old = self.opts
        self.opts = old[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = old
