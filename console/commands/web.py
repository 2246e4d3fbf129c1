"""`workdeck web`: the console in a browser (console/web.py)."""

from __future__ import annotations

import ipaddress

import click

from console.commands.base import Context, fail, pass_ctx

DEFAULT_LISTEN = "127.0.0.1:8471"


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve the page: a loopback address (reach it from elsewhere "
              "through an SSH tunnel).")
@pass_ctx
def web(ctx: Context, listen: str) -> None:
    """Serve the console to a browser: each tab a console of its own, acting as the person
    who signed in with their token. Prints a sign-in link for you."""
    import secrets

    host, port = _loopback_address(listen)
    with ctx.client() as client:
        you = client.get("/api/whoami")
    # The link's secret lives as long as this server: whoever opens the link has consoles
    # that are you, as this command is (your account on the socket, or your profile).
    yours = secrets.token_urlsafe(32)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Workdeck in a browser, as {you['name']}: "
               f"http://{shown}:{port}/login?token={yours}")
    click.echo(f"Others sign in at http://{shown}:{port}/ with a token of their own "
               f"(`workdeck token create`). From another machine: ssh -L "
               f"{port}:{shown}:{port} THIS_HOST, then the same address. ctrl+c stops it.",
               err=True)
    from console.web import WebConsole

    try:
        WebConsole(ctx.target, host, port, yours=yours, you=you["name"]).serve()
    except OSError as exc:
        fail(f"Cannot serve on {listen}: {exc.strerror or exc}.")


def _loopback_address(listen: str) -> tuple[str, int]:
    from wire.hosts import loopback

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        if host != "localhost":
            ipaddress.ip_address(host)  # a name other than localhost is not taken
    except ValueError:
        fail(f"--listen takes HOST:PORT with a loopback address, as {DEFAULT_LISTEN}; "
             f"{listen!r} is not one.")
    if not 0 < number < 65536:
        fail(f"{port} is not a port (1 to 65535).")
    if not loopback(host):
        fail(f"workdeck web serves plain HTTP, so only on a loopback address, not {host}: "
             f"from another machine, tunnel to it (ssh -L {number}:127.0.0.1:{number} "
             "THIS_HOST).")
    return host, number
