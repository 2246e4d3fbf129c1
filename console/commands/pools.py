"""`workdeck pool ...`: create, describe, list and show worker pools."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import (
    ENGINES_TO_SET,
    Context,
    engine_said,
    engine_setting,
    fail,
    pass_ctx,
)
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


@pool.command("set")
@click.argument("name")
@click.option("--description", help="What the pool is for.")
@click.option("--engine", type=ENGINES_TO_SET,
              help="The container engine its steps in an image use where a member is set "
              "to none (any: the first that answers).")
@pass_ctx
def pool_set(ctx: Context, name: str, description: str | None, engine: str | None) -> None:
    """Change what a pool is for, or its container engine."""
    if description is None and engine is None:
        fail("Say what to change: --description TEXT or --engine podman|docker|any.")
    with ctx.client() as client:
        changed: Pool = view(client.put(f"/api/pools/{segment(name)}", {
            "description": description, "engine": engine_setting(engine)}))
    output.say(f"Pool {changed.name}: containers with {engine_said(changed.engine)}.")


@pool.command("describe")
@click.argument("name")
@click.argument("description")
@pass_ctx
def pool_describe(ctx: Context, name: str, description: str) -> None:
    """Set what a pool is for (its workers' reach, who may target it)."""
    with ctx.client() as client:
        client.put(f"/api/pools/{segment(name)}", {"description": description})
    output.say(f"Described pool {name}.")


class Seconds(click.ParamType):
    """A duration: seconds, or a number with s, m, h or d."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        unit = self.UNITS.get(text[-1:], None) if text else None
        try:
            return float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (for example 90, 90s, 5m, 2h or 90d)", param,
                      ctx)


@pool.command("provision")
@click.argument("name")
@click.option("--create", "create", metavar="COMMAND",
              help="Run on the server's host with the new worker's name as its last "
              "argument; prints one JSON object: host, port, user, key, host_key.")
@click.option("--destroy", "destroy", metavar="COMMAND",
              help="Run on the server's host with the worker's name as its last argument.")
@click.option("--min", "minimum", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Dynamic workers kept warm, idle or not.")
@click.option("--max", "maximum", type=click.IntRange(0, 100), default=1, show_default=True,
              help="Dynamic workers at most (0: destroy them all once idle).")
@click.option("--capacity", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Slots on each worker it makes.")
@click.option("--idle", type=Seconds(), default="5m", show_default=True,
              help="Destroy a dynamic worker idle this long (above --min).")
@click.option("--wait", type=Seconds(), default="10s", show_default=True,
              help="Make a worker when a step has waited this long for a slot.")
@click.option("--timeout", type=Seconds(), default="2m", show_default=True,
              help="Stop either command after this long.")
@click.option("--per-minute", type=click.IntRange(1, 600), default=6, show_default=True,
              help="Make at most this many workers in any minute.")
@click.option("--off", is_flag=True, help="Stop making workers for this pool (once its "
              "dynamic workers are gone).")
@pass_ctx
def pool_provision(ctx: Context, name: str, create: str | None, destroy: str | None,
                   minimum: int, maximum: int, capacity: int, idle: float, wait: float,
                   timeout: float, per_minute: int, off: bool) -> None:
    """Make workers for a pool on demand (dynamic workers), and give them back when idle."""
    with ctx.client() as client:
        if off:
            client.delete(f"/api/pools/{segment(name)}/provisioner")
            output.say(f"Pool {name} makes no more workers.")
            return
        if not create or not destroy:
            fail("Say how to make and destroy a worker: --create COMMAND and --destroy "
                 "COMMAND (or --off).")
        changed: Pool = view(client.put(f"/api/pools/{segment(name)}/provisioner", {
            "create": create, "destroy": destroy, "min": minimum, "max": maximum,
            "capacity": capacity, "idle_s": idle, "wait_s": wait, "timeout_s": timeout,
            "per_minute": per_minute}))
    output.say(f"Pool {changed.name} makes up to {maximum} worker{'s' if maximum != 1 else ''}"
               f" of {capacity} slot{'s' if capacity != 1 else ''} when a step has waited "
               f"{wait:g} s" + (f", keeping {minimum} warm" if minimum else "") + ".")


POOL_HEADERS = ["NAME", "HEALTHY", "LEASED", "QUEUED", "UTILIZATION", "DYNAMIC", "DESCRIPTION"]


def dynamic_summary(p: Pool) -> str:
    """A pool's provisioner in a few words: its workers of its maximum, and what it does."""
    made = p.provisioner
    if made is None:
        return "-"
    return f"{made.workers}/{made.max}" + ("" if made.state == "ready" else f" {made.state}")


def _pool_row(p: Pool) -> list[object]:
    return [p.name + (" (default)" if p.default else ""),
            f"{p.healthy_workers}/{p.workers}", f"{p.leased}/{p.capacity}",
            p.queued, f"{p.utilization:.0%}", dynamic_summary(p), p.description]


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
               "steps queued")
    made = p.provisioner
    if made is not None:
        output.say(f"Dynamic workers: {made.workers} of at most {made.max} ({made.min} kept "
                   f"warm), {made.capacity} slot{'s' if made.capacity != 1 else ''} each, made"
                   f" after {made.wait_s:g} s of waiting, destroyed after {made.idle_s:g} s "
                   f"idle; {made.state}")
        if made.note:
            output.say(f"Last: {made.note} ({display.ago(made.note_at)})")
        output.say(f"Create: {made.create}\nDestroy: {made.destroy}")
    output.say()
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
