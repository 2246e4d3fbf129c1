"""`workdeck pool ...`: create, describe, list and show worker pools."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import Context, pass_ctx
from console.commands.workers import WORKER_HEADERS, worker_rows
from console.typed import view
from wire.paths import segment

if TYPE_CHECKING:
    from wire.pools import Pool, PoolDetail
    from wire.workers import Worker


@click.group()
def pool() -> None:
    """Create and list worker pools."""


@pool.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the pool is for.")
@click.option("--engine", type=click.Choice(["podman", "docker"]),
              help="The container engine its steps in an image use where a member is set "
              "to none (default: the first that answers).")
@pass_ctx
def pool_add(ctx: Context, name: str, description: str, engine: str | None) -> None:
    """Create a worker pool."""

    with ctx.client() as client:
        created: Pool = view(client.post("/api/pools", {"name": name, "description": description,
                                                        "engine": engine or ""}))
    output.say(f"Added pool {created.name}.")


@pool.command("describe")
@click.argument("name")
@click.argument("description")
@pass_ctx
def pool_describe(ctx: Context, name: str, description: str) -> None:
    """Set what a pool is for (its workers' reach, who may target it)."""
    with ctx.client() as client:
        client.put(f"/api/pools/{segment(name)}", {"description": description})
    output.say(f"Described pool {name}.")


POOL_HEADERS = ["NAME", "HEALTHY", "LEASED", "QUEUED", "UTILIZATION", "DESCRIPTION"]


def _pool_row(p: Pool) -> list[object]:
    return [p.name + (" (default)" if p.default else ""),
            f"{p.healthy_workers}/{p.workers}", f"{p.leased}/{p.capacity}",
            p.queued, f"{p.utilization:.0%}", p.description]


@pool.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pool_list(ctx: Context, as_json: bool) -> None:
    """List the pools with their members' health."""

    with ctx.client() as client:
        pools: list[Pool] = view(client.get("/api/pools"))
    if as_json:
        output.print_json(pools)
    else:
        output.table(POOL_HEADERS, [_pool_row(p) for p in pools])


@pool.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pool_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one pool: its workers, the steps on them, the queue, utilization."""

    with ctx.client() as client:
        p: PoolDetail = view(client.get(f"/api/pools/{segment(name)}"))
        members: list[Worker] = view(client.get("/api/workers")) if p.members else []
    if as_json:
        output.print_json(p)
        return
    output.say(f"{p.name}{' (default pool)' if p.default else ''}")
    if p.description:
        output.say(p.description)
    output.say(f"{p.healthy_workers} of {p.workers} workers healthy; {p.leased} of "
               f"{p.capacity} slots leased ({p.utilization:.0%}), {p.queued} "
               "steps queued\n")
    output.table(WORKER_HEADERS, worker_rows([w for w in members if w.name in p.members]))
    if p.leases:
        output.say("\nRunning here")
        output.table(["RUN", "STEP", "WORKER", "SINCE", "WHY"], [
            [f"{lease.run_id} {lease.runbook}", f"{lease.position}. {lease.step_name}",
             lease.worker, display.ago(lease.since), lease.worker_reason]
            for lease in p.leases])
    if p.queue:
        output.say("\nQueued")
        output.table(["RUN", "STEP", "FOR", "WAITING SINCE"], [
            [queued.run_id, f"{queued.position}. {queued.step_name}",
             queued.worker or "any worker", display.ago(queued.since)]
            for queued in p.queue])
