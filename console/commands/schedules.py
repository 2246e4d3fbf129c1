"""`workdeck schedule add|list|show|pause|resume|remove`: runbooks launched at the times
of a cron expression, as the person who made the schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from console import display, output
from console.commands.base import Context, pass_ctx
from console.commands.runs import ask_secrets, read_vars
from console.typed import view
from wire.paths import segment

if TYPE_CHECKING:
    from wire.schedules import Schedule


@click.group()
def schedule() -> None:
    """Runbooks launched on a schedule (cron expressions, in a time zone)."""


@schedule.command("add")
@click.argument("name")
@click.option("--runbook", required=True, help="The runbook to launch.")
@click.option("--env", "environment", required=True, help="The environment to run in.")
@click.option("--cron", required=True, metavar="EXPR",
              help="Minute hour day-of-month month day-of-week, as in \"0 3 * * 1-5\" "
              "(or @hourly, @daily, @weekly, @monthly, @yearly).")
@click.option("--timezone", default="UTC", show_default=True,
              help="The zone its times are in, as Europe/Berlin (daylight saving and all).")
@click.option("--var", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A variable's value (KEY=@FILE, KEY=@- read it); sensitive ones are "
              "kept encrypted.")
@click.option("--var-file", "var_files", multiple=True, metavar="FILE",
              help="KEY=VALUE lines (- for stdin).")
@click.option("--overlap", is_flag=True,
              help="Launch even while its last run still runs (by default it waits for "
              "the next time).")
@click.option("--missed", type=click.Choice(["skip", "once"]), default="skip",
              show_default=True, help="Times missed while no server ran: skipped, or run "
              "once for all of them when a server starts.")
@pass_ctx
def schedule_add(ctx: Context, name: str, runbook: str, environment: str, cron: str,
                 timezone: str, pairs: tuple[str, ...], var_files: tuple[str, ...],
                 overlap: bool, missed: str) -> None:
    """Launch RUNBOOK in ENV at the times of a cron expression, as you: your grants are
    checked at each launch."""
    values, _inline = read_vars(pairs, var_files)
    with ctx.client() as client:
        ask_secrets(client, runbook, values)
        made: Schedule = view(client.post("/api/schedules", {
            "name": name, "runbook": runbook, "environment": environment, "cron": cron,
            "timezone": timezone, "variables": values, "overlap": overlap,
            "missed": missed}))
    output.say(f"Schedule {made.name}: {made.runbook} on {made.environment}, "
               f"{_when(made)}; next {display.due(made.next_at, made.timezone)}.")


def _when(item: Schedule) -> str:
    """"At 03:00 on Monday through Friday (0 3 * * 1-5, Europe/Berlin)"."""
    said = item.explained[:1].lower() + item.explained[1:]
    return f"{said} ({item.cron}, {item.timezone})"


@schedule.command("list")
@click.option("--runbook", help="Only this runbook's schedules.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedule_list(ctx: Context, runbook: str | None, as_json: bool) -> None:
    """Every schedule, its next time and what came of its last one."""
    with ctx.client() as client:
        listed: list[Schedule] = view(client.get(
            "/api/schedules", params={"runbook": runbook} if runbook else None))
    if as_json:
        output.print_json(listed)
        return
    output.table(["NAME", "RUNBOOK", "ENV", "CRON", "TIMEZONE", "NEXT", "LAST"],
                 [[s.name, s.runbook, s.environment, s.cron, s.timezone,
                   "paused" if s.paused else display.due(s.next_at, s.timezone),
                   s.last_outcome or "-"] for s in listed])


@schedule.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedule_show(ctx: Context, name: str, as_json: bool) -> None:
    """One schedule: when, as whom, what it does with missed times, its newest runs."""
    with ctx.client() as client:
        item: Schedule = view(client.get(f"/api/schedules/{segment(name)}"))
    if as_json:
        output.print_json(item)
        return
    values = ", ".join(f"{k}={v}" for k, v in item.variables.items())
    lines = [f"schedule {item.name}: {item.runbook} on {item.environment}",
             f"  when:     {_when(item)}",
             "  next:     " + ("paused (`schedule resume` goes on from then)" if item.paused
                               else display.due(item.next_at, item.timezone)),
             f"  launches: as {item.person} (made by {item.actor}); their grants are "
             "checked each time",
             "  overlap:  " + ("launches even while its last run runs" if item.overlap
                               else "waits for the next time while its last run runs"),
             "  missed:   " + ("run once for all times missed while no server ran"
                               if item.missed == "once" else
                               "times missed while no server ran are skipped"),
             "  values:   " + (values or "the runbook's defaults")
             + (" (and sensitive ones, kept encrypted)" if item.keeps_sensitive else ""),
             f"  last:     {item.last_outcome or 'not yet due'}"]
    output.say("\n".join(lines))
    if item.runs:
        output.say("")
        output.table(["RUN", "STATUS", "LAUNCHED", "FINISHED"],
                     [[r.id, r.status, display.started(r.created_at),
                       display.started(r.finished_at)] for r in item.runs])


def _set_paused(ctx: Context, name: str, paused: bool) -> None:
    with ctx.client() as client:
        changed: Schedule = view(client.patch(f"/api/schedules/{segment(name)}",
                                              {"paused": paused}))
    output.say(f"Schedule {changed.name} is paused: it launches nothing until resumed."
               if changed.paused else
               f"Schedule {changed.name} goes on: next "
               f"{display.due(changed.next_at, changed.timezone)}.")


@schedule.command("pause")
@click.argument("name")
@pass_ctx
def schedule_pause(ctx: Context, name: str) -> None:
    """Launch nothing until resumed."""
    _set_paused(ctx, name, True)


@schedule.command("resume")
@click.argument("name")
@pass_ctx
def schedule_resume(ctx: Context, name: str) -> None:
    """Go on from now (the times passed while paused are not run)."""
    _set_paused(ctx, name, False)


@schedule.command("remove")
@click.argument("name")
@pass_ctx
def schedule_remove(ctx: Context, name: str) -> None:
    """Remove a schedule (its runs stay)."""
    with ctx.client() as client:
        client.delete(f"/api/schedules/{segment(name)}")
    output.say(f"Removed schedule {name}.")
