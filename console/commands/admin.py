"""`workdeck settings`, `policy`, `advise` and `audit`: server-wide settings, the advisor,
the audit log."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from console import output
from console.commands.base import Context, Renamed, pass_ctx
from console.typed import view

if TYPE_CHECKING:
    from wire.server import AuditEvent, Finding, Policy, Settings


@click.command()
@click.option("--builtin-worker", type=click.Choice(["on", "off"]),
              help="Run steps on the server's own machine (the built-in worker).")
@click.option("--worker-name-pattern", metavar="REGEX",
              help="The naming convention the advisor holds worker names to.")
@click.option("--pool-name-pattern", metavar="REGEX",
              help="The naming convention the advisor holds pool names to.")
@click.option("--keep-runs-days", type=float, metavar="DAYS",
              help="Keep finished runs and their logs this long (default 30).")
@click.option("--keep-runs-gb", type=float, metavar="GB",
              help="Keep at most this much log in all, the oldest runs going first "
              "(default 10).")
@click.option("--keep-audit-days", type=float, metavar="DAYS",
              help="Keep the audit log this long (default 365).")
@click.option("--node-heartbeat", "node_heartbeat_s", type=float, metavar="SECONDS",
              help="How often each server node says it is alive (default 5).")
@click.option("--node-lease", "node_lease_s", type=float, metavar="SECONDS",
              help="A node silent this long is lost, its work taken over (default 15).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def settings(ctx: Context, builtin_worker: str | None, worker_name_pattern: str | None,
             pool_name_pattern: str | None, keep_runs_days: float | None,
             keep_runs_gb: float | None, keep_audit_days: float | None,
             node_heartbeat_s: float | None, node_lease_s: float | None,
             as_json: bool) -> None:
    """Show or change server settings."""
    change: dict[str, Any] = {"worker_name_pattern": worker_name_pattern,
                              "pool_name_pattern": pool_name_pattern,
                              "keep_runs_days": keep_runs_days, "keep_runs_gb": keep_runs_gb,
                              "keep_audit_days": keep_audit_days,
                              "node_heartbeat_s": node_heartbeat_s,
                              "node_lease_s": node_lease_s}
    if builtin_worker:
        change["builtin_worker"] = builtin_worker == "on"
    change = {k: v for k, v in change.items() if v is not None}

    with ctx.client() as client:
        current: Settings = view(client.put("/api/settings", change) if change
                          else client.get("/api/settings"))
    if as_json:
        output.print_json(current)
    else:
        output.say(f"built-in worker:     {'on' if current.builtin_worker else 'off'}")
        output.say(f"worker name pattern: {current.worker_name_pattern}")
        output.say(f"pool name pattern:   {current.pool_name_pattern}")
        output.say(f"runs kept:           {current.keep_runs_days:g} days, at most "
                   f"{current.keep_runs_gb:g} GB of logs")
        output.say(f"audit log kept:      {current.keep_audit_days:g} days")
        output.say(f"server nodes:        heartbeat every {current.node_heartbeat_s:g} s, "
                   f"lost after {current.node_lease_s:g} s")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def advise(ctx: Context, as_json: bool) -> None:
    """What in the fleet goes against the worker recommendations; exit 1 if anything."""

    with ctx.client() as client:
        findings: list[Finding] = view(client.get("/api/advice"))
    if as_json:
        output.print_json(findings)
    elif not findings:
        output.say("No findings: the fleet follows the recommendations.")
    else:
        for finding in findings:
            output.say(f"{finding.severity.upper():8}  {finding.finding}")
            output.say(f"          {finding.advice}")
        critical = sum(1 for f in findings if f.severity == "critical")
        output.say(f"\n{len(findings)} findings, {critical} critical.")
    sys.exit(1 if findings else 0)


@click.command()
@click.option("--interval", type=float, help="Seconds between two checks of a worker.")
@click.option("--timeout", type=float, help="Seconds a check may take.")
@click.option("--disk-free-warning-mb", "--disk-warning-mb", cls=Renamed, type=float,
              help="Warn when free disk is below this.")
@click.option("--load-warning-factor", "--load-factor", cls=Renamed, type=float,
              help="Warn when the 5-minute load is above this many times the CPU count.")
@click.option("--custom-script", "--script", cls=Renamed, type=click.File("r"),
              help="A bash health-check script run on every worker: exit 0 healthy, "
              "1 warning, anything else unhealthy ('-' for stdin, an empty file to remove "
              "it).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def policy(ctx: Context, interval: float | None, timeout: float | None,
           disk_free_warning_mb: float | None, load_warning_factor: float | None,
           custom_script: Any, as_json: bool) -> None:
    """Show or change the machine policy for health checks."""

    with ctx.client() as client:
        current: Policy = view(client.get("/api/policy"))
        changes = {"interval_s": interval, "timeout_s": timeout,
                   "disk_free_warning_mb": disk_free_warning_mb,
                   "load_warning_factor": load_warning_factor}
        changes = {k: v for k, v in changes.items() if v is not None}
        if custom_script is not None:
            changes["custom_script"] = custom_script.read()
        if changes:
            current = view(client.put("/api/policy",
                                                 current.model_dump() | changes))
    if as_json:
        output.print_json(current)
        return
    output.say(f"interval        {current.interval_s:g}s (with jitter)")
    output.say(f"timeout         {current.timeout_s:g}s")
    output.say(f"disk warning    below {current.disk_free_warning_mb:g} MB free")
    output.say(f"load warning    above {current.load_warning_factor:g} x CPUs (5-min load)")
    output.say(f"history         last {current.history_size} checks per worker")
    output.say(f"custom script   {'yes' if current.custom_script.strip() else 'none'}")


@click.command()
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit(ctx: Context, limit: int, as_json: bool) -> None:
    """Show who changed what, newest first."""

    with ctx.client() as client:
        events: list[AuditEvent] = view(client.get("/api/audit", params={"limit": limit}))
    if as_json:
        output.print_json(events)
    else:
        output.table(["WHEN", "WHO", "ACTION", "TARGET", "DETAIL"],
                     [[(e.at or "")[:19].replace("T", " "), e.actor, e.action, e.target,
                       e.detail] for e in events])
