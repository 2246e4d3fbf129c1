"""The `workdeck` command line: every command is a call to the server's API."""

from __future__ import annotations

import importlib
from typing import Any

import click

from console.commands.base import Context, fail
from console.errors import ApiError
from wire.datadir import DataDirError

# Each command and the module that holds it: a command imports only its own module, so
# `workdeck worker list` never waits for what `workdeck runs log` needs.
COMMANDS = {
    "worker": "workers", "check": "workers", "pool": "pools", "server": "server",
    "demo": "server", "settings": "admin", "policy": "admin", "advise": "admin",
    "audit": "admin", "env": "runs", "runbook": "runs", "run": "runs", "runs": "runs",
    "user": "people", "token": "people", "whoami": "people", "login": "people",
    "db": "db", "nodes": "nodes", "node": "nodes", "schedule": "schedules",
    "notify": "notify", "web": "web",
}


class WorkdeckGroup(click.Group):
    """Loads a command's module when the command is used, and turns every refusal into
    one sentence on stderr and an exit status, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        return getattr(importlib.import_module(f"console.commands.{module}"), cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            fail(str(exc), 4 if exc.status_code == 0 else 1)
        except DataDirError as exc:
            fail(str(exc))


@click.group(cls=WorkdeckGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
# Not `readable`: on a shared host the data directory is another account's, which a
# member of its socket's group may pass through (to the socket) but not list.
@click.option("--data-dir", type=click.Path(file_okay=False, readable=False),
              help="Where the server keeps its files (default: $WORKDECK_HOME or the "
              "platform's user data directory).")
@click.option("--server", "server_url", metavar="URL|NAME", help="Talk to the server at URL "
              "(several, comma-separated: nodes of one database, tried in turn), "
              "or saved as NAME by `workdeck login` (default: $WORKDECK_SERVER, else the "
              "local server).")
@click.version_option(package_name="workdeck")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, server_url: str | None) -> None:
    """Workdeck: operate a fleet of SSH workers. Without a command, open the console."""
    ctx.obj = Context(data_dir, server_url)
    if ctx.invoked_subcommand is None:
        from console.app import run_console
        from console.client import ensure_server

        ensure_server(ctx.obj.target)
        run_console(ctx.obj.target)


def main() -> None:
    try:
        cli.main(prog_name="workdeck")
    except KeyboardInterrupt:
        fail("Interrupted.", 130)


if __name__ == "__main__":
    main()
