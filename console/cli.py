"""The `workdeck` command line: every command is a call to the server's API."""

from __future__ import annotations

from typing import Any

import click

from backend.config import DataDirError
from console.client import ApiError, ensure_server
from console.commands import admin, pools, runs, server, workers
from console.commands.base import Context, fail


class WorkdeckGroup(click.Group):
    """Turns every refusal into one sentence on stderr and an exit status, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            fail(str(exc), 4 if exc.status_code == 0 else 1)
        except DataDirError as exc:
            fail(str(exc))


@click.group(cls=WorkdeckGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the server keeps "
              "its files (default: $WORKDECK_HOME or the platform's user data directory).")
@click.option("--server", "server_url", metavar="URL", help="Talk to the server at URL "
              "(default: $WORKDECK_SERVER, else the local server).")
@click.version_option(package_name="workdeck")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, server_url: str | None) -> None:
    """Workdeck: operate a fleet of SSH workers. Without a command, open the console."""
    ctx.obj = Context(data_dir, server_url)
    if ctx.invoked_subcommand is None:
        from console.app import run_console

        ensure_server(ctx.obj.target)
        run_console(ctx.obj.target)



for command in (workers.worker, workers.check, pools.pool, server.server, server.demo,
                admin.settings, admin.policy, admin.advise, admin.audit, runs.env,
                runs.runbook, runs.run, runs.runs):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(prog_name="workdeck")
    except KeyboardInterrupt:
        fail("Interrupted.", 130)


if __name__ == "__main__":
    main()
