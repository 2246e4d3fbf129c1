"""`workdeck worker ...` and `workdeck check`: register, inspect, trust and check workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import (
    ENGINES_TO_SET,
    Context,
    Renamed,
    engine_said,
    engine_setting,
    fail,
    pass_ctx,
)
from console.typed import view
from wire.paths import segment

if TYPE_CHECKING:
    from wire.workers import Worker

WORST_EXIT = {"healthy": 0, "warning": 1, "unhealthy": 2, "unavailable": 2}


@click.group()
def worker() -> None:
    """Add, list, check and trust workers."""


def _key_path(key: str | None) -> str | None:
    # The server may run elsewhere in the file system: send an absolute path.
    return str(Path(os.path.expanduser(key)).absolute()) if key else None


@worker.command("add")
@click.argument("name")
@click.option("--host", required=True, help="Host name or IP address to SSH to.")
@click.option("--port", type=int, default=22, show_default=True)
@click.option("--user", help="Account to log in as (default: the server's account).")
@click.option("--key-path", "--key", cls=Renamed, type=click.Path(dir_okay=False),
              help="Private key file to log in with.")
@click.option("--use-agent", "--agent", cls=Renamed, is_flag=True,
              help="Also offer keys from ssh-agent.")
@click.option("--pool", "pools", multiple=True, help="Pool to join (repeatable; created "
              "when missing; default: the default pool).")
@click.option("--capacity", type=int, default=4, show_default=True,
              help="Steps the worker may run at once.")
@click.option("--work-dir", help="Folder for work on the worker (default ~/.workdeck/work).")
@click.option("--trust-host-key", is_flag=True,
              help="Pin the host key the worker presents on its first connection.")
@click.option("--engine", type=click.Choice(["podman", "docker"]),
              help="The container engine its steps in an image must use (default: the "
              "first that answers there).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_add(ctx: Context, name: str, host: str, port: int, user: str | None,
               key_path: str | None, use_agent: bool, pools: tuple[str, ...], capacity: int,
               work_dir: str | None, trust_host_key: bool, engine: str | None,
               as_json: bool) -> None:
    """Register a worker reached over SSH."""
    body = {"name": name, "host": host, "port": port, "user": user,
            "key_path": _key_path(key_path), "use_agent": use_agent, "pools": list(pools),
            "capacity": capacity,
            "work_dir": work_dir, "trust_host_key": trust_host_key, "engine": engine or ""}

    with ctx.client() as client:
        created: Worker = view(client.post("/api/workers", body))
    if as_json:
        output.print_json(created)
    else:
        output.say(f"Added worker {created.name} ({created.host}:{created.port}) "
                   f"in {', '.join(created.pools)}. It is checked now; see "
                   f"`workdeck worker show {created.name}`.")


@worker.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--pool", "pools", multiple=True, help="Also add every worker to this pool.")
@click.option("--trust-host-key", is_flag=True,
              help="Pin each worker's host key on its first connection.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_import(ctx: Context, file: str, pools: tuple[str, ...], trust_host_key: bool,
                  as_json: bool) -> None:
    """Register workers from an Ansible INI/YAML inventory or an ssh_config file."""
    from console.inventory import InventoryError, load_inventory

    try:
        specs = load_inventory(file)
    except InventoryError as exc:
        fail(str(exc))
    base = Path(file).absolute().parent
    workers = [
        {"name": s.name, "host": s.host, "port": s.port, "user": s.user,
         "key_path": (str(base / s.key_path) if s.key_path and not os.path.isabs(s.key_path)
                      else s.key_path),
         "pools": list(s.pools)}
        for s in specs
    ]

    with ctx.client() as client:
        created: list[Worker] = view(client.post("/api/workers/import", {
            "workers": workers, "pools": list(pools), "trust_host_key": trust_host_key}))
    if as_json:
        output.print_json(created)
    else:
        output.say(f"Imported {len(created)} workers from {file}.")


def worker_rows(workers: list[Worker]) -> list[list[str]]:
    return [
        [display.worker_label(w.name, w.builtin, w.dynamic),
         w.status + (" (draining)" if w.draining else ""),
         f"{w.leased}/{w.capacity}", ", ".join(w.pools),
         f"{w.user + '@' if w.user else ''}{w.host}" + (
             f":{w.port}" if w.port not in (22, 0) else ""),
         display.latency(w.latency_ms), display.load(w.facts.load, w.facts.cpus),
         display.disk_free(d.free_mb for d in w.facts.disks or ()),
         display.engine(w.facts.container_engine),
         display.ago(w.checked_at),
         (f"orphan: {w.orphans} ({w.orphan_reason}); " if w.orphans else "") + w.reason]
        for w in workers
    ]


WORKER_HEADERS = ["NAME", "STATUS", "LEASED", "POOLS", "ADDRESS", "LATENCY", "LOAD", "DISK FREE",
                  "ENGINE", "CHECKED", "REASON"]


@worker.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_list(ctx: Context, as_json: bool) -> None:
    """List every worker with its latest health."""

    with ctx.client() as client:
        workers: list[Worker] = view(client.get("/api/workers"))
    if as_json:
        output.print_json(workers)
    else:
        output.table(WORKER_HEADERS, worker_rows(workers))


@worker.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one worker: address, health, facts, host key."""

    with ctx.client() as client:
        w: Worker = view(client.get(f"/api/workers/{segment(name)}"))
    if as_json:
        output.print_json(w)
        return
    facts = w.facts
    rows: list[tuple[str, object]] = [
        ("Name", display.worker_label(w.name, w.builtin, w.dynamic)),
        ("Status", w.status + (f": {w.reason}" if w.reason else "")),
        ("Address", f"{w.user or ''}{'@' if w.user else ''}{w.host}:{w.port}"),
        ("Pools", ", ".join(w.pools)),
        ("Capacity", f"{w.capacity} slots"),
        ("Enabled", "yes" if w.enabled else "no"),
        ("Checked", display.ago(w.checked_at)),
        ("Latency", f"{display.latency(w.latency_ms)} command, "
                    f"{display.latency(w.connect_ms)} connect"),
        ("Host key", w.host_key or "not pinned"),
    ]
    if w.presented_host_key:
        rows.append(("Presented key", w.presented_host_key))
    for value, label in ((facts.os, "OS"), (facts.kernel, "Kernel"), (facts.cpus, "CPUs")):
        if value is not None:
            rows.append((label, value))
    if facts.load:
        rows.append(("Load", display.load(facts.load, facts.cpus)))
    if facts.container_engine is not None or w.engine:
        rows.append(("Containers", display.engine(facts.container_engine) + (
            f" (set to use {w.engine})" if w.engine else "")))
    if facts.mem_total_mb is not None:
        rows.append(("Memory", f"{facts.mem_available_mb or 0:.0f} MB available of "
                               f"{facts.mem_total_mb:.0f} MB"))
    for disk in facts.disks or ():
        rows.append((f"Disk {disk.mount}", f"{disk.free_mb:.0f} MB free of "
                                           f"{disk.size_mb:.0f} MB"))
    width = max(len(k) for k, _ in rows)
    for key, shown in rows:
        output.say(f"{key.ljust(width)}  {output.clean_line(str(shown), 300)}")


@worker.command("set")
@click.argument("name")
@click.option("--capacity", type=click.IntRange(1, 1000),
              help="Steps the worker may run at once.")
@click.option("--engine", type=ENGINES_TO_SET,
              help="The container engine its steps in an image must use (any: the first "
              "that answers there).")
@pass_ctx
def worker_set(ctx: Context, name: str, capacity: int | None, engine: str | None) -> None:
    """Change a worker's capacity or container engine."""
    if capacity is None and engine is None:
        fail("Say what to change: --capacity N or --engine podman|docker|any.")
    with ctx.client() as client:
        changed: Worker = view(client.patch(f"/api/workers/{segment(name)}", {
            "capacity": capacity, "engine": engine_setting(engine)}))
    output.say(f"Worker {changed.name}: {changed.capacity} slots, containers with "
               f"{engine_said(changed.engine)}.")


@worker.command("remove")
@click.argument("name")
@pass_ctx
def worker_remove(ctx: Context, name: str) -> None:
    """Forget a worker (its pinned key and history too)."""
    with ctx.client() as client:
        client.delete(f"/api/workers/{segment(name)}")
    output.say(f"Removed worker {name}.")


@worker.command("enable")
@click.argument("name")
@pass_ctx
def worker_enable(ctx: Context, name: str) -> None:
    """Let a worker take work and be checked again."""
    with ctx.client() as client:
        client.post(f"/api/workers/{segment(name)}/enable")
    output.say(f"Enabled worker {name}.")


@worker.command("disable")
@click.argument("name")
@pass_ctx
def worker_disable(ctx: Context, name: str) -> None:
    """Stop a worker from taking work or being checked."""

    with ctx.client() as client:
        w: Worker = view(client.post(f"/api/workers/{segment(name)}/disable"))
    output.say(f"Disabled worker {name}." + _still_running(w))


@worker.command("drain")
@click.argument("name")
@pass_ctx
def worker_drain(ctx: Context, name: str) -> None:
    """Let a worker finish its running steps but take no new ones."""

    with ctx.client() as client:
        w: Worker = view(client.post(f"/api/workers/{segment(name)}/drain"))
    output.say(f"Draining worker {name}." + (_still_running(w) or " It runs no step now."))


@worker.command("undrain")
@click.argument("name")
@pass_ctx
def worker_undrain(ctx: Context, name: str) -> None:
    """Let a draining worker take new steps again."""
    with ctx.client() as client:
        client.post(f"/api/workers/{segment(name)}/undrain")
    output.say(f"Worker {name} takes new steps again.")


def _still_running(w: Worker) -> str:
    count = w.leased
    return (f" {count} step{'s' if count != 1 else ''} still running on it finish"
            f"{'es' if count == 1 else ''} there." if count else "")


@worker.command("trust")
@click.argument("name")
@click.option("--fingerprint", metavar="SHA256:...",
              help="Trust only if the presented key has this fingerprint.")
@pass_ctx
def worker_trust(ctx: Context, name: str, fingerprint: str | None) -> None:
    """Pin the host key a worker presented, after you verified its fingerprint.

    Without --fingerprint it shows the presented fingerprint and asks; where nobody can
    answer (no terminal), it refuses."""

    with ctx.client() as client:
        if fingerprint is None:
            current: Worker = view(client.get(f"/api/workers/{segment(name)}"))
            presented = current.presented_host_key
            if not presented:
                fail(f"Worker {name} has not presented an untrusted host key; run `workdeck "
                     f"check --worker {name}` to fetch its key first.")
            if not sys.stdin.isatty():
                fail(f"Worker {name} presents {presented}; nothing was trusted. Check it out "
                     f"of band, then run `workdeck worker trust {name} --fingerprint "
                     f"{presented}`.")
            changed = f" (it replaces the pinned {current.host_key})" \
                if current.host_key else ""
            output.say(f"Worker {name} presents the host key {presented}{changed}.")
            if not click.confirm("Trust it?", default=False):
                fail("Nothing was trusted.")
            fingerprint = presented
        w: Worker = view(client.post(f"/api/workers/{segment(name)}/trust",
                           {"fingerprint": fingerprint}))
    output.say(f"Trusted host key {w.host_key} for worker {name}.")


@click.command()
@click.option("--pool", "pools", multiple=True, help="Check the workers of this pool.")
@click.option("--worker", "workers", multiple=True, help="Check this worker.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def check(ctx: Context, pools: tuple[str, ...], workers: tuple[str, ...], as_json: bool) -> None:
    """Health-check workers now; exit 0 all healthy, 1 worst is a warning, 2 worse."""

    with ctx.client() as client:
        results: list[Worker] = view(client.post("/api/checks",
                                 {"workers": list(workers), "pools": list(pools)}))
    if as_json:
        output.print_json(results)
    else:
        output.table(WORKER_HEADERS, worker_rows(results))
    sys.exit(max((WORST_EXIT.get(w.status, 0) for w in results), default=0))
