"""`workdeck nodes` and `workdeck node drain|undrain`: the servers using one store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import Context, pass_ctx
from console.typed import view

if TYPE_CHECKING:
    from wire.nodes import Node


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def nodes(ctx: Context, as_json: bool) -> None:
    """The servers using this store: alive or not, what each does, draining or not."""
    with ctx.client() as client:
        listed: list[Node] = view(client.get("/api/nodes"))
    if as_json:
        output.print_json(listed)
        return
    output.table(
        ["NODE", "STATE", "SEEN", "WORKERS", "RUNS", "VERSION", "HOST", "ADDRESS"],
        [[node.name + (" *" if node.this else ""),
          node.state + (", draining" if node.draining else ""),
          display.ago(node.last_seen), node.workers_checked, node.runs_executing,
          node.version, f"{node.host} (pid {node.pid})", node.address] for node in listed])


@click.group()
def node() -> None:
    """Drain or undrain a server ("node") using this store."""


def _set_draining(ctx: Context, name: str, draining: bool) -> None:
    with ctx.client() as client:
        changed: Node = view(client.patch(f"/api/nodes/{name}", {"draining": draining}))
    output.say(f"Node {changed.name} finishes what it runs and takes no new runs."
               if changed.draining else f"Node {changed.name} takes new runs again.")


@node.command("drain")
@click.argument("name")
@pass_ctx
def node_drain(ctx: Context, name: str) -> None:
    """Finish what it runs; take no new runs."""
    _set_draining(ctx, name, True)


@node.command("undrain")
@click.argument("name")
@pass_ctx
def node_undrain(ctx: Context, name: str) -> None:
    """Take new runs again."""
    _set_draining(ctx, name, False)
