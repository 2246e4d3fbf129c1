"""`workdeck user ...`, `workdeck token ...`, `workdeck whoami` and `workdeck login`:
people, their roles and their tokens, and the servers a person logs in to."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from console import display, output
from console.commands.base import Context, pass_ctx
from console.commands.pools import Seconds
from console.typed import view
from wire.paths import segment
from wire.roles import ROLES

if TYPE_CHECKING:
    from wire.people import Person, Token, TokenCreated, Whoami


@click.group()
def user() -> None:
    """People who may use Workdeck, and their roles."""


@user.command("add")
@click.argument("name")
@click.option("--os-user", metavar="ACCOUNT", help="Their account on the server's host: "
              "over a socket opened to their group (`server --socket-group`) they need no "
              "token.")
@pass_ctx
def user_add(ctx: Context, name: str, os_user: str | None) -> None:
    """Add a person (with no role until one is granted)."""
    with ctx.client() as client:
        added: Person = view(client.post("/api/people", {"name": name, "os_user": os_user}))
    account = f" (the account {added.os_user} on the server's host)" if added.os_user else ""
    output.say(f"Added {added.name}{account}. Grant a role with `workdeck user grant "
               f"{added.name} viewer|operator|approver|admin`"
               + ("." if added.os_user else ", and make them a token with `workdeck token "
                  f"create --user {added.name}`."))


@user.command("set")
@click.argument("name")
@click.option("--os-user", metavar="ACCOUNT", help="Their account on the server's host.")
@click.option("--no-os-user", is_flag=True, help="No account: over the socket they are "
              "refused (tokens still work).")
@pass_ctx
def user_set(ctx: Context, name: str, os_user: str | None, no_os_user: bool) -> None:
    """Change a person: the account they are on the server's host."""
    from console.commands.base import fail

    if (os_user is None) == (not no_os_user):
        fail("Give --os-user ACCOUNT or --no-os-user.")
    with ctx.client() as client:
        person: Person = view(client.patch(f"/api/people/{segment(name)}",
                                           {"os_user": os_user}))
    output.say(f"{person.name} is " + (f"the account {person.os_user} on the server's host."
                                       if person.os_user else "no account on the server's "
                                       "host."))


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def user_list(ctx: Context, as_json: bool) -> None:
    """List people with their roles."""
    with ctx.client() as client:
        people: list[Person] = view(client.get("/api/people"))
    if as_json:
        output.print_json(people)
        return
    output.table(["NAME", "ACCOUNT", "ROLES", "TOKENS", "ADDED"], [
        [p.name + (" (the server's account)" if p.builtin else ""), p.os_user or "-",
         display.grants(p), p.tokens, display.ago(p.created_at) if p.created_at else "-"]
        for p in people])


@user.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def user_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one person: their roles and tokens."""
    with ctx.client() as client:
        person: Person = view(client.get(f"/api/people/{segment(name)}"))
        tokens: list[Token] = [t for t in view(client.get("/api/tokens")) or []
                               if t.person == person.name]
    if as_json:
        output.print_json(person)
        return
    output.say(f"{person.name}: {display.grants(person)}"
               + (f"; the account {person.os_user} on the server's host" if person.os_user
                  else ""))
    if tokens:
        output.table(["TOKEN", "LABEL", "CREATED", "EXPIRES", "LAST USED"], [
            [t.id, t.label, display.ago(t.created_at), t.expires_at or "never",
             display.ago(t.last_used_at) if t.last_used_at else "never"] for t in tokens])


@user.command("remove")
@click.argument("name")
@pass_ctx
def user_remove(ctx: Context, name: str) -> None:
    """Remove a person, with their roles and tokens (their open streams close)."""
    with ctx.client() as client:
        client.delete(f"/api/people/{segment(name)}")
    output.say(f"Removed {name}.")


@user.command("grant")
@click.argument("name")
@click.argument("role", type=click.Choice(list(ROLES)))
@click.option("--env", "environments", multiple=True,
              help="Only there, for what acts on a run (repeatable; default: everywhere).")
@pass_ctx
def user_grant(ctx: Context, name: str, role: str, environments: tuple[str, ...]) -> None:
    """Give a person a role, everywhere or in some environments."""
    _change_grant(ctx, name, "grants", role, environments)


def _change_grant(ctx: Context, name: str, how: str, role: str,
                  environments: tuple[str, ...]) -> None:
    with ctx.client() as client:
        person: Person = view(client.post(f"/api/people/{segment(name)}/{how}",
                                          {"role": role, "environments": list(environments)}))
    output.say(f"{person.name}: {display.grants(person)}.")


@user.command("revoke")
@click.argument("name")
@click.argument("role", type=click.Choice(list(ROLES)))
@click.option("--env", "environments", multiple=True,
              help="Only there (repeatable; default: the role everywhere it is held).")
@pass_ctx
def user_revoke(ctx: Context, name: str, role: str, environments: tuple[str, ...]) -> None:
    """Take a role back from a person."""
    _change_grant(ctx, name, "revoke", role, environments)


@click.group()
def token() -> None:
    """Tokens: how a person's clients prove who they are over the network."""


@token.command("create")
@click.option("--user", "person", help="Whose (default: yours; someone else's needs admin).")
@click.option("--expires", type=Seconds(), help="How long it lasts: 90d, 12h, 30m (default: "
              "until revoked).")
@click.option("--label", default="", help="Where it is used, such as laptop.")
@pass_ctx
def token_create(ctx: Context, person: str | None, expires: float | None, label: str) -> None:
    """Make a token and print it once (it is stored only as its SHA-256)."""
    with ctx.client() as client:
        made: TokenCreated = view(client.post("/api/tokens", {
            "person": person, "label": label, "expires_s": expires}))
    # The token alone on stdout, so that it can be piped into `workdeck login`.
    click.echo(made.token)
    output.say(f"Token {made.id} for {made.person}" + (f" ({made.label})" if made.label else "")
               + (f", expires {made.expires_at}" if made.expires_at else "")
               + ": it is shown only now.", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def token_list(ctx: Context, as_json: bool) -> None:
    """Your tokens (an admin sees everyone's); never the tokens themselves."""
    with ctx.client() as client:
        tokens: list[Token] = view(client.get("/api/tokens")) or []
    if as_json:
        output.print_json(tokens)
        return
    output.table(["ID", "PERSON", "LABEL", "CREATED", "EXPIRES", "LAST USED"], [
        [t.id, t.person, t.label, display.ago(t.created_at), t.expires_at or "never",
         display.ago(t.last_used_at) if t.last_used_at else "never"] for t in tokens])


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(1))
@pass_ctx
def token_revoke(ctx: Context, token_id: int) -> None:
    """Revoke a token: it stops working at once, and its open streams close."""
    with ctx.client() as client:
        client.delete(f"/api/tokens/{token_id}")
    output.say(f"Revoked token {token_id}.")


@click.command()
@pass_ctx
def whoami(ctx: Context) -> None:
    """Who the server takes you for, and what you may do."""
    with ctx.client() as client:
        me: Whoami = view(client.get("/api/whoami"))
    how = f"socket, account {me.os_user}" if me.via == "socket" and me.os_user else me.via
    output.say(f"{me.name} ({how}): {display.grants(me)}")
    output.say("may: " + (", ".join(me.permissions) or "nothing yet"))


@click.command()
@click.argument("url")
@click.option("--name", help="What to call it in --server NAME (default: its host).")
@click.option("--fingerprint", "expected", metavar="SHA256:...", multiple=True,
              help="The certificate's fingerprint as `workdeck server status` shows it on "
              "the server: pinned without asking when the server presents it (once per "
              "node, for several).")
def login(url: str, name: str | None, expected: tuple[str, ...]) -> None:
    """Save a server for `workdeck --server NAME`: its URL (or the URLs of several nodes,
    comma-separated), your token (asked for, or read from stdin) and, when no authority
    vouches for it, its certificate (each node's), pinned."""
    import httpx

    from console import profiles
    from console.commands.base import fail

    urls = [part.strip().rstrip("/") for part in url.split(",") if part.strip()]
    if not urls:
        fail(f"{url!r} is not a server's address: give https://HOST:PORT.")
    for address in urls:
        _check_address(address)
    interactive = sys.stdin.isatty()
    token = (click.prompt("Token", hide_input=True) if interactive
             else sys.stdin.readline()).strip()
    if not token:
        fail("No token was given: `workdeck token create` on the server makes one.")
    pinned = [_certificate_to_pin(address, expected, interactive) for address in urls]
    if any(pinned) and not all(pinned):
        fail("Some of these nodes have a certificate an authority vouches for and some do "
             "not: give them certificates of one kind (one profile checks them one way).")
    certificate = "".join(pem for pem in pinned if pem) or None
    host = urlsplit(urls[0]).hostname or ""
    profile = profiles.Profile(name or host, ",".join(urls), token, certificate)
    answer = None
    for address in urls:  # the first node that answers says who the token is
        try:
            with httpx.Client(base_url=address, verify=profile.ssl_context(address), timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as http:
                answer = http.get("/api/whoami")
            break
        except httpx.HTTPError as exc:
            failure = exc
    if answer is None:
        fail(f"No server answers at {' or '.join(urls)} ({failure}).")
    if answer.status_code != 200:
        try:
            said = answer.json()["detail"]
        except (ValueError, KeyError, TypeError):
            said = f"it answered {answer.status_code}"
        fail(f"The server refused the token: {said}")
    me: Whoami = view(answer.json())
    saved = profiles.save(profile)
    output.say(f"Logged in to {' and '.join(urls)} as {me.name}: {display.grants(me)}. "
               f"Saved as {profile.name!r} in {saved}: use it with `workdeck --server "
               f"{profile.name}`.")


def _check_address(url: str) -> None:
    from console.commands.base import fail

    where = urlsplit(url)
    host = where.hostname or ""
    if where.scheme not in ("https", "http") or not host:
        fail(f"{url!r} is not a server's address: give https://HOST:PORT.")
    if where.scheme == "http":
        from wire.hosts import loopback

        if not loopback(host):
            fail("Plain HTTP would send your token across the network in the clear: use "
                 "https://.")


def _certificate_to_pin(url: str, expected: tuple[str, ...], interactive: bool) -> str | None:
    """The certificate of the server at `url` to pin (its PEM), once the person said so or
    it is one of the `expected` fingerprints; None when an authority vouches for it."""
    from console import tls
    from console.commands.base import fail
    from wire.certs import fingerprint, same_fingerprint

    where = urlsplit(url)
    host, port = where.hostname or "", where.port or (443 if where.scheme == "https" else 80)
    if where.scheme != "https":
        return None
    try:
        if tls.vouched_for(host, port):
            return None
        certificate = tls.certificate(host, port)
    except OSError as exc:
        fail(f"No server answers at {url} ({exc}).")
    shown = fingerprint(certificate)
    if expected:
        if not any(same_fingerprint(given, shown) for given in expected):
            fail(f"The server at {url} presented {shown}, not "
                 f"{' or '.join(expected)}: nothing was saved.")
    elif interactive:
        output.say(f"No certificate authority this machine trusts vouches for {url}.\nIt "
                   f"presented the certificate\n  {shown}\nCompare it with what `workdeck "
                   "server status` says on the server.")
        if not click.confirm("Pin this certificate and trust it from now on?"):
            fail("Nothing was saved.")
    else:
        fail(f"The server at {url} presented {shown}, which no authority this machine "
             "trusts vouches for: check it (`workdeck server status` on the server) and pass "
             "it with --fingerprint.")
    return certificate
