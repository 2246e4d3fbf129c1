"""`workdeck pool ...`: create, list and show worker pools."""

from __future__ import annotations

from typing import Any

import click

from console import output
from console.commands.base import Context, pass_ctx, quote_name
from console.commands.workers import WORKER_HEADERS, worker_rows


@click.group()
def pool() -> None:
    """Create and list worker pools."""


@pool.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the pool is for.")
@pass_ctx
def pool_add(ctx: Context, name: str, description: str) -> None:
    """Create a worker pool."""
    with ctx.client() as client:
        created = client.post("/api/pools", {"name": name, "description": description})
    click.echo(f"Added pool {created['name']}.")


POOL_HEADERS = ["NAME", "WORKERS", "HEALTHY", "CAPACITY", "DESCRIPTION"]


def _pool_row(p: dict[str, Any]) -> list[Any]:
    return [p["name"] + (" (default)" if p["default"] else ""), p["worker_count"],
            f"{p['healthy_workers']}/{p['worker_count']}", p["capacity"], p["description"]]


@pool.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pool_list(ctx: Context, as_json: bool) -> None:
    """List the pools with their members' health."""
    with ctx.client() as client:
        pools = client.get("/api/pools")
    if as_json:
        output.print_json(pools)
    else:
        output.table(POOL_HEADERS, [_pool_row(p) for p in pools])


@pool.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pool_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one pool and its workers."""
    with ctx.client() as client:
        p = client.get(f"/api/pools/{quote_name(name)}")
        members = [w for w in client.get("/api/workers") if name in w["pools"]]
    if as_json:
        output.print_json(p)
        return
    click.echo(f"{p['name']}{' (default pool)' if p['default'] else ''}")
    if p["description"]:
        click.echo(p["description"])
    click.echo(f"{p['healthy_workers']} of {p['worker_count']} workers healthy, capacity "
               f"{p['capacity']} slots\n")
    output.table(WORKER_HEADERS, worker_rows(members))
