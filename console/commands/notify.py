"""`workdeck notify add|list|show|test|remove`: where Workdeck tells of what happens (a
webhook taking JSON, or a Slack incoming webhook)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import Context, fail, pass_ctx
from console.commands.runs import read_value
from console.typed import view
from wire.paths import segment

if TYPE_CHECKING:
    from wire.notifications import DeliveryShown, Notification

EVENTS = ("run-failed", "run-succeeded", "run-waiting", "worker-unavailable", "pool-short")


@click.group()
def notify() -> None:
    """Notifications: a URL posted to when runs fail, wait or succeed, a worker becomes
    unavailable or a pool falls short of healthy workers."""


@notify.command("add")
@click.argument("name")
@click.option("--url", required=True, help="Where to post (http:// or https://).")
@click.option("--format", "format_", type=click.Choice(["json", "slack"]), default="json",
              show_default=True, help="A JSON body describing the event, or a Slack "
              "incoming-webhook message.")
@click.option("--on", "on", multiple=True, metavar="EVENT[,EVENT...]",
              help=f"Events to tell of: {', '.join(EVENTS)} (default: all but "
              "run-succeeded).")
@click.option("--env", "environments", multiple=True, help="Only runs in this environment.")
@click.option("--pool", "pools", multiple=True,
              help="Only workers, pools and runs of this pool.")
@click.option("--secret", metavar="@FILE|@-",
              help="Sign each body with HMAC-SHA256 (X-Workdeck-Signature); read from a "
              "file or stdin, kept encrypted.")
@pass_ctx
def notify_add(ctx: Context, name: str, url: str, format_: str, on: tuple[str, ...],
               environments: tuple[str, ...], pools: tuple[str, ...],
               secret: str | None) -> None:
    """Tell URL of the chosen events."""
    events = [event.strip() for given in on for event in given.split(",") if event.strip()]
    if secret is not None:
        if not secret.startswith("@") or len(secret) < 2:
            fail("Give the secret as --secret @FILE or --secret @- (stdin): on the command "
                 "line it would show in `ps` and shell history.")
        secret = read_value(secret[1:], "the secret")
    with ctx.client() as client:
        made: Notification = view(client.post("/api/notifications", {
            "name": name, "url": url, "format": format_, "events": events,
            "environments": list(environments), "pools": list(pools), "secret": secret}))
    output.say(f"Notification {made.name}: {made.url} ({made.format}) is told of "
               f"{', '.join(made.events)}{_where(made)}"
               + ("; bodies signed" if made.signed else "") + ". "
               f"`{ctx.command} notify test {made.name}` sends one now.")


def _where(item: Notification) -> str:
    parts = []
    if item.environments:
        parts.append("runs in " + ", ".join(item.environments))
    if item.pools:
        parts.append("pools " + ", ".join(item.pools))
    return f" ({'; '.join(parts)})" if parts else ""


def _last(delivery: DeliveryShown | None) -> str:
    if delivery is None:
        return "nothing sent yet"
    return (f"{delivery.event} {delivery.status} {display.ago(delivery.created_at)}"
            + (f": {delivery.answer}" if delivery.answer else ""))


@notify.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def notify_list(ctx: Context, as_json: bool) -> None:
    """Every notification and its last delivery."""
    with ctx.client() as client:
        listed: list[Notification] = view(client.get("/api/notifications"))
    if as_json:
        output.print_json(listed)
        return
    output.table(["NAME", "FORMAT", "ON", "URL", "LAST"],
                 [[n.name, n.format, ",".join(n.events) + _where(n), n.url, _last(n.last)]
                  for n in listed])


@notify.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def notify_show(ctx: Context, name: str, as_json: bool) -> None:
    """One notification and its newest deliveries, with each receiver's answer."""
    with ctx.client() as client:
        item: Notification = view(client.get(f"/api/notifications/{segment(name)}"))
    if as_json:
        output.print_json(item)
        return
    output.say(f"notification {item.name}: {item.url} ({item.format})\n"
               f"  on:     {', '.join(item.events)}{_where(item)}\n"
               f"  signed: {'yes (X-Workdeck-Signature: sha256=...)' if item.signed else 'no'}"
               f"\n  made by {item.actor}")
    if item.deliveries:
        output.say("")
        output.table(["ID", "EVENT", "ABOUT", "STATUS", "TRIES", "WHEN", "ANSWER"],
                     [[d.id, d.event, d.subject,
                       d.status + (f" (next {display.started(d.next_at)})"
                                   if d.next_at else ""),
                       d.attempts, display.started(d.created_at), d.answer]
                      for d in item.deliveries])


@notify.command("test")
@click.argument("name")
@pass_ctx
def notify_test(ctx: Context, name: str) -> None:
    """Send a test event now and print the receiver's answer (exit 1 when it failed)."""
    with ctx.client() as client:
        sent: DeliveryShown = view(client.post(f"/api/notifications/{segment(name)}/test"))
    output.say(f"{sent.status}: {sent.answer}")
    if sent.status != "delivered":
        sys.exit(1)


@notify.command("remove")
@click.argument("name")
@pass_ctx
def notify_remove(ctx: Context, name: str) -> None:
    """Remove a notification (its pending deliveries go with it)."""
    with ctx.client() as client:
        client.delete(f"/api/notifications/{segment(name)}")
    output.say(f"Removed notification {name}.")
