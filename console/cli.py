"""The `workdeck` command line: every command is a call to the server's API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from backend.config import DataDir, DataDirError
from console import output
from console.client import ApiError, Client, Target, ensure_server

WORST_EXIT = {"healthy": 0, "warning": 1, "unhealthy": 2, "unavailable": 2}


class Context:
    def __init__(self, data_dir: str | None, server: str | None) -> None:
        self.target = Target(DataDir.resolve(data_dir), server)

    def client(self) -> Client:
        ensure_server(self.target)
        return Client(self.target)


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"workdeck: {message}", err=True)
    sys.exit(code)


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


# ---------------------------------------------------------------- server


@cli.group(invoke_without_command=True)
@click.option("--listen", metavar="unix:PATH|HOST:PORT",
              help="Where to serve the API (default: the data directory's socket).")
@click.option("--demo-fleet", is_flag=True, hidden=True)
@pass_ctx
@click.pass_context
def server(click_ctx: click.Context, ctx: Context, listen: str | None, demo_fleet: bool) -> None:
    """Run the backend server in the foreground (or: status, stop)."""
    if click_ctx.invoked_subcommand is not None:
        return
    import logging

    from backend.server import ServerError, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    prepare = None
    if demo_fleet:
        from backend.demo import prepare_demo

        prepare = prepare_demo
    try:
        serve(ctx.target.data_dir, listen, prepare=prepare)
    except ServerError as exc:
        fail(str(exc))


@server.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def server_status(ctx: Context, as_json: bool) -> None:
    """Say whether a server answers, and what it is doing."""
    with Client(ctx.target) as client:
        if not client.alive():
            if as_json:
                output.print_json({"running": False})
            else:
                click.echo(f"No server is running at {ctx.target.describe()}.")
            sys.exit(3)
        status = client.get("/api/server")
    if as_json:
        output.print_json({"running": True, **status})
        return
    click.echo(f"Workdeck server {status['version']} running, pid {status['pid']}, "
               f"up {status['uptime_s']:.0f}s, listening on {status['listen']}, "
               f"{status['connections']} SSH connections, {status['subscribers']} consoles.")


@server.command("stop")
@pass_ctx
def server_stop(ctx: Context) -> None:
    """Stop the server (runs in progress are interrupted)."""
    import time

    with Client(ctx.target) as client:
        if not client.alive():
            click.echo(f"No server is running at {ctx.target.describe()}.")
            return
        client.post("/api/server/stop")
        deadline = time.monotonic() + 10
        while client.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if client.alive():
            fail("The server did not stop within 10s.")
    click.echo("Server stopped.")


# ---------------------------------------------------------------- workers


@cli.group()
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
@click.option("--key", type=click.Path(dir_okay=False), help="Private key file to log in with.")
@click.option("--agent", is_flag=True, help="Also offer keys from ssh-agent.")
@click.option("--pool", "pools", multiple=True, help="Pool to join (repeatable; created "
              "when missing; default: the default pool).")
@click.option("--capacity", type=int, default=4, show_default=True,
              help="Steps the worker may run at once.")
@click.option("--work-dir", help="Folder for work on the worker (default ~/.workdeck/work).")
@click.option("--trust-host-key", is_flag=True,
              help="Pin the host key the worker presents on its first connection.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_add(ctx: Context, name: str, host: str, port: int, user: str | None,
               key: str | None, agent: bool, pools: tuple[str, ...], capacity: int,
               work_dir: str | None, trust_host_key: bool, as_json: bool) -> None:
    """Register a worker reached over SSH."""
    body = {"name": name, "host": host, "port": port, "user": user, "key_path": _key_path(key),
            "use_agent": agent, "pools": list(pools), "capacity": capacity,
            "work_dir": work_dir, "trust_host_key": trust_host_key}
    with ctx.client() as client:
        created = client.post("/api/workers", body)
    if as_json:
        output.print_json(created)
    else:
        click.echo(f"Added worker {created['name']} ({created['host']}:{created['port']}) "
                   f"in {', '.join(created['pools'])}. It is checked now; see "
                   f"`workdeck worker show {created['name']}`.")


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
    from backend.inventory import InventoryError, load_inventory

    try:
        specs = load_inventory(file)
    except InventoryError as exc:
        fail(str(exc))
    base = Path(file).absolute().parent
    workers = [
        {"name": s.name, "host": s.host, "port": s.port, "user": s.user,
         "key_path": str(base / s.key) if s.key and not os.path.isabs(s.key) else s.key,
         "pools": list(s.pools)}
        for s in specs
    ]
    with ctx.client() as client:
        created = client.post("/api/workers/import", {
            "workers": workers, "pools": list(pools), "trust_host_key": trust_host_key})
    if as_json:
        output.print_json(created)
    else:
        click.echo(f"Imported {len(created)} workers from {file}.")


def _worker_rows(workers: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [output.worker_label(w), w["status"], ", ".join(w["pools"]),
         f"{w['user'] + '@' if w['user'] else ''}{w['host']}" + (
             f":{w['port']}" if w["port"] not in (22, 0) else ""),
         output.ms(w["latency_ms"]), output.load(w), output.disk_free(w),
         output.ago(w["checked_at"]), w["reason"]]
        for w in workers
    ]


WORKER_HEADERS = ["NAME", "STATUS", "POOLS", "ADDRESS", "LATENCY", "LOAD", "DISK FREE",
                  "CHECKED", "REASON"]


@worker.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_list(ctx: Context, as_json: bool) -> None:
    """List every worker with its latest health."""
    with ctx.client() as client:
        workers = client.get("/api/workers")
    if as_json:
        output.print_json(workers)
    else:
        output.table(WORKER_HEADERS, _worker_rows(workers))


@worker.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def worker_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one worker: address, health, facts, host key."""
    with ctx.client() as client:
        w = client.get(f"/api/workers/{_quote(name)}")
    if as_json:
        output.print_json(w)
        return
    facts = w["facts"]
    rows = [
        ("Name", output.worker_label(w)),
        ("Status", w["status"] + (f": {w['reason']}" if w["reason"] else "")),
        ("Address", f"{w['user'] or ''}{'@' if w['user'] else ''}{w['host']}:{w['port']}"),
        ("Pools", ", ".join(w["pools"])),
        ("Capacity", f"{w['capacity']} slots"),
        ("Enabled", "yes" if w["enabled"] else "no"),
        ("Checked", output.ago(w["checked_at"])),
        ("Latency", f"{output.ms(w['latency_ms'])} command, {output.ms(w['connect_ms'])} "
                    "connect"),
        ("Host key", w["host_key"] or "not pinned"),
    ]
    if w["presented_host_key"]:
        rows.append(("Presented key", w["presented_host_key"]))
    for key, label in (("os", "OS"), ("kernel", "Kernel"), ("cpus", "CPUs")):
        if key in facts:
            rows.append((label, facts[key]))
    if "load" in facts:
        rows.append(("Load", output.load(w)))
    if "mem_total_mb" in facts:
        rows.append(("Memory", f"{facts.get('mem_available_mb', 0):.0f} MB available of "
                               f"{facts['mem_total_mb']:.0f} MB"))
    for disk in facts.get("disks", []):
        rows.append((f"Disk {disk['mount']}", f"{disk['free_mb']:.0f} MB free of "
                                             f"{disk['size_mb']:.0f} MB"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {output.clean_line(str(value), 300)}")


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@worker.command("remove")
@click.argument("name")
@pass_ctx
def worker_remove(ctx: Context, name: str) -> None:
    """Forget a worker (its pinned key and history too)."""
    with ctx.client() as client:
        client.delete(f"/api/workers/{_quote(name)}")
    click.echo(f"Removed worker {name}.")


@worker.command("enable")
@click.argument("name")
@pass_ctx
def worker_enable(ctx: Context, name: str) -> None:
    """Let a worker take work and be checked again."""
    with ctx.client() as client:
        client.post(f"/api/workers/{_quote(name)}/enable")
    click.echo(f"Enabled worker {name}.")


@worker.command("disable")
@click.argument("name")
@pass_ctx
def worker_disable(ctx: Context, name: str) -> None:
    """Stop a worker from taking work or being checked."""
    with ctx.client() as client:
        client.post(f"/api/workers/{_quote(name)}/disable")
    click.echo(f"Disabled worker {name}.")


@worker.command("trust")
@click.argument("name")
@click.option("--fingerprint", metavar="SHA256:...",
              help="Trust only if the presented key has this fingerprint.")
@pass_ctx
def worker_trust(ctx: Context, name: str, fingerprint: str | None) -> None:
    """Pin the host key a worker presented, after you verified its fingerprint."""
    with ctx.client() as client:
        w = client.post(f"/api/workers/{_quote(name)}/trust", {"fingerprint": fingerprint})
    click.echo(f"Trusted host key {w['host_key']} for worker {name}.")


# ---------------------------------------------------------------- pools


@cli.group()
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
        p = client.get(f"/api/pools/{_quote(name)}")
        members = [w for w in client.get("/api/workers") if name in w["pools"]]
    if as_json:
        output.print_json(p)
        return
    click.echo(f"{p['name']}{' (default pool)' if p['default'] else ''}")
    if p["description"]:
        click.echo(p["description"])
    click.echo(f"{p['healthy_workers']} of {p['worker_count']} workers healthy, capacity "
               f"{p['capacity']} slots\n")
    output.table(WORKER_HEADERS, _worker_rows(members))


# ---------------------------------------------------------------- checks


@cli.command()
@click.option("--pool", "pools", multiple=True, help="Check the workers of this pool.")
@click.option("--worker", "workers", multiple=True, help="Check this worker.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def check(ctx: Context, pools: tuple[str, ...], workers: tuple[str, ...], as_json: bool) -> None:
    """Health-check workers now; exit 0 all healthy, 1 worst is a warning, 2 worse."""
    with ctx.client() as client:
        results = client.post("/api/checks", {"workers": list(workers), "pools": list(pools)})
    if as_json:
        output.print_json(results)
    else:
        output.table(WORKER_HEADERS, _worker_rows(results))
    sys.exit(max((WORST_EXIT.get(w["status"], 0) for w in results), default=0))


# ---------------------------------------------------------------- settings


@cli.command()
@click.option("--builtin-worker", type=click.Choice(["on", "off"]),
              help="Run steps on the server's own machine (the built-in worker).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def settings(ctx: Context, builtin_worker: str | None, as_json: bool) -> None:
    """Show or change server settings."""
    with ctx.client() as client:
        if builtin_worker:
            current = client.put("/api/settings", {"builtin_worker": builtin_worker == "on"})
        else:
            current = client.get("/api/settings")
    if as_json:
        output.print_json(current)
    else:
        click.echo(f"built-in worker: {'on' if current['builtin_worker'] else 'off'}")


@cli.command()
@click.option("--interval", type=float, help="Seconds between two checks of a worker.")
@click.option("--timeout", type=float, help="Seconds a check may take.")
@click.option("--disk-warning-mb", type=float, help="Warn when free disk is below this.")
@click.option("--load-factor", type=float, help="Warn when the 5-minute load is above this "
              "many times the CPU count.")
@click.option("--script", type=click.File("r"), help="A bash health-check script run on every "
              "worker: exit 0 healthy, 1 warning, anything else unhealthy ('-' for stdin, "
              "an empty file to remove it).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def policy(ctx: Context, interval: float | None, timeout: float | None,
           disk_warning_mb: float | None, load_factor: float | None, script: Any,
           as_json: bool) -> None:
    """Show or change the machine policy for health checks."""
    with ctx.client() as client:
        current = client.get("/api/policy")
        changes = {"interval_s": interval, "timeout_s": timeout,
                   "disk_free_warning_mb": disk_warning_mb, "load_warning_factor": load_factor}
        changes = {k: v for k, v in changes.items() if v is not None}
        if script is not None:
            changes["custom_script"] = script.read()
        if changes:
            current = client.put("/api/policy", current | changes)
    if as_json:
        output.print_json(current)
        return
    click.echo(f"interval        {current['interval_s']:g}s (with jitter)")
    click.echo(f"timeout         {current['timeout_s']:g}s")
    click.echo(f"disk warning    below {current['disk_free_warning_mb']:g} MB free")
    click.echo(f"load warning    above {current['load_warning_factor']:g} x CPUs (5-min load)")
    click.echo(f"history         last {current['history_size']} checks per worker")
    click.echo(f"custom script   {'yes' if current['custom_script'].strip() else 'none'}")


@cli.command()
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit(ctx: Context, limit: int, as_json: bool) -> None:
    """Show who changed what, newest first."""
    with ctx.client() as client:
        events = client.get("/api/audit", params={"limit": limit})
    if as_json:
        output.print_json(events)
    else:
        output.table(["WHEN", "WHO", "ACTION", "TARGET", "DETAIL"],
                     [[e["at"][:19].replace("T", " "), e["actor"], e["action"], e["target"],
                       e["detail"]] for e in events])


# ---------------------------------------------------------------- demo


@cli.command()
@click.option("--keep", is_flag=True, help="Leave the demo server running after the console "
              "closes (it prints where).")
def demo(keep: bool) -> None:
    """Open the console on a throwaway demo fleet of real SSH workers on loopback."""
    from console.demo import run_demo

    run_demo(keep=keep)


def main() -> None:
    try:
        cli.main(prog_name="workdeck")
    except KeyboardInterrupt:
        fail("Interrupted.", 130)


if __name__ == "__main__":
    main()
