"""`workdeck server ...` and `workdeck demo`: run, inspect and stop the backend."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import Context, fail, pass_ctx
from console.typed import view

if TYPE_CHECKING:
    from wire.server import ServerStatus


@click.group(invoke_without_command=True)
@click.option("--listen", metavar="unix:PATH|HOST:PORT",
              help="Where to serve the API (default: the data directory's socket); a "
              "HOST:PORT is served over HTTPS.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="The certificate to serve "
              "(PEM; default: one made for this server, kept in the data directory).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option("--plain-http", is_flag=True, help="Serve HTTP without TLS: on a loopback "
              "address only (tokens would cross the network in the clear).")
@click.option("--socket-group", metavar="GROUP", help="Open the Unix socket to this OS "
              "group's members too: each is the person mapped to their account (`user add "
              "--os-user`), known by the kernel, with no token.")
@click.option("--database", envvar="WORKDECK_DATABASE", metavar="postgresql://USER@HOST/DB",
              help="Keep the data in this PostgreSQL database (default: SQLite in the data "
              "directory; env WORKDECK_DATABASE).")
@click.option("--node", envvar="WORKDECK_NODE", metavar="NAME",
              help="This server's name among those using the store (default: the host "
              "name; env WORKDECK_NODE).")
@click.option("--demo-fleet", is_flag=True, hidden=True)
@click.option("--exit-with", type=int, hidden=True, metavar="PID",
              help="Stop when this process (the demo's console) is gone.")
@pass_ctx
@click.pass_context
def server(click_ctx: click.Context, ctx: Context, listen: str | None, tls_cert: str | None,
           tls_key: str | None, plain_http: bool, socket_group: str | None,
           database: str | None, node: str | None, demo_fleet: bool, exit_with: int | None) -> None:
    """Run the backend server in the foreground (or: status, stop)."""
    if click_ctx.invoked_subcommand is not None:
        return
    import logging

    from backend.core import Backend
    from backend.server import ServerError, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    prepare = None
    if demo_fleet:
        from backend.demo.fleet import prepare_demo

        def prepare(backend: Backend) -> None:
            prepare_demo(backend, exit_with=exit_with)

    try:
        serve(ctx.target.data_dir, listen, prepare=prepare, tls_cert=tls_cert,
              tls_key=tls_key, plain_http=plain_http, socket_group=socket_group,
              database=database, node=node)
    except ServerError as exc:
        fail(str(exc))
    finally:
        if demo_fleet and exit_with is not None:
            from backend.demo.fleet import remove_demo_files

            remove_demo_files(ctx.target.data_dir)


@server.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def server_status(ctx: Context, as_json: bool) -> None:
    """Say whether a server answers, and what it is doing."""
    from console.client import Client

    with Client(ctx.target) as client:
        if not client.alive():
            if as_json:
                output.print_json({"running": False})
            else:
                output.say(f"No server is running at {ctx.target.describe()}.")
            sys.exit(3)
        status: ServerStatus = view(client.get("/api/server"))
    if as_json:
        output.print_json({"running": True, **status.model_dump()})
        return
    output.say(f"Workdeck server {status.version} running, pid {status.pid}, "
               f"up {status.uptime_s:.0f}s, listening on {status.listen}, "
               f"{status.connections} SSH connections, {status.subscribers} consoles.")
    if status.socket_group:
        output.say(f"The socket is open to the group {status.socket_group}: its members are "
                   "the people mapped to their accounts (`workdeck user add --os-user`).")
    if status.tls_fingerprint:
        output.say(f"TLS certificate {status.tls_fingerprint} (clients pin it with "
                   "`workdeck login`).")
    if status.store.kind == "postgresql":
        output.say(f"Store: PostgreSQL at {status.store.where}.")
    free = status.disk_free_bytes
    output.say(f"Data directory {status.data_dir}: {display.size(status.data_dir_bytes)}"
               + (f", {display.size(free)} free on its disk" if free is not None else "") + ".")
    if status.store_fault:
        output.say(f"PROBLEM: {status.store_fault}: writes are retried and runs keep their "
                   "output in memory until it is fixed; it works again by itself then.")


@server.command("stop")
@pass_ctx
def server_stop(ctx: Context) -> None:
    """Stop the server (runs in progress are interrupted)."""
    import time

    from console.client import Client

    with Client(ctx.target) as client:
        if not client.alive():
            output.say(f"No server is running at {ctx.target.describe()}.")
            return
        client.post("/api/server/stop")
        deadline = time.monotonic() + 10
        while client.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if client.alive():
            fail("The server did not stop within 10s.")
    output.say("Server stopped.")


@click.command()
@click.option("--keep", is_flag=True, help="Leave the demo server running after the console "
              "closes (it prints where).")
def demo(keep: bool) -> None:
    """Open the console on a throwaway demo fleet of real SSH workers on loopback."""
    from console.demo import run_demo

    run_demo(keep=keep)
