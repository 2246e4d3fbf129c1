"""The Dashboard: fleet health at a glance, pools, and what needs attention."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from console import display
from console.display import ago, plural
from console.screens.base import FleetScreen
from console.screens.runs import COLUMNS as RUN_COLUMNS
from console.screens.runs import fleet_runs, run_cells
from console.screens.workers import attention_rank
from console.state import (
    STATUS_ORDER,
    STATUS_STYLE,
    meter,
    safe,
    sparkline,
    status_text,
    worker_name_text,
)
from console.widgets.live_table import ColumnSpec, LiveTable

if TYPE_CHECKING:
    from console.state import Fleet
    from wire.pools import HistoryPoint, Pool
    from wire.workers import Worker

NEEDS_ATTENTION = {"unhealthy", "unavailable", "warning", "unknown"}


def attention_cells(worker: Worker) -> list[Text]:
    return [status_text(worker.status), worker_name_text(worker),
            Text(ago(worker.checked_at, datetime.now(UTC)), style="bright_black"),
            safe(worker.reason, 300)]


RECENT_RUNS = 5


# Narrow, the numbers stay whole; the history, then the description, give way.
POOL_COLUMNS: list[ColumnSpec] = [
    ("pool", "Pool", 38, 0, 22), ("utilization", "Utilization", 18), ("leased", "Leased", 7),
    ("queued", "Queued", 6), ("healthy", "Healthy", 7), ("history", "Last 10 minutes", 20, 1),
    ("description", "Description", None, 2)]


def pool_cells(pool: Pool, history: Iterable[HistoryPoint],
               now: float | None = None) -> list[Text]:
    """A pool at a glance: how full, what waits, how healthy, how it went lately."""
    healthy, workers = pool.healthy_workers, pool.workers
    queued = pool.queued
    name = safe(pool.name, 100)
    if pool.default:
        name.append(" (default)", style="italic bright_black")
    leased = Text(f"{pool.leased}/{pool.capacity}")
    if pool.draining_workers:
        leased.append(f" ⇣{pool.draining_workers}", style="yellow")
    return [
        name,
        meter(pool),
        leased,
        Text(str(queued), style="bold red" if queued else "bright_black"),
        Text(f"{healthy}/{workers}",
             style="red" if healthy == 0 and workers else "yellow" if healthy < 2 else ""),
        sparkline(history, now or time.time()),
        provisioner_text(pool) + safe(pool.description, 200),
    ]


def provisioner_text(pool: Pool) -> Text:
    """A pool's dynamic workers in a few words, before its description: how many of its
    maximum, and what its provisioner does when it is not simply ready."""
    made = pool.provisioner
    if made is None:
        return Text()
    text = Text(f"dynamic {made.workers}/{made.max}", style="cyan")
    if made.state != "ready":
        text.append(f" {made.state}", style="bold red" if made.state == "failing"
                    else "yellow")
    text.append(" · " if pool.description else "")
    return text


def pools_table(table_id: str, fleet: Fleet) -> LiveTable:
    table = LiveTable(id=table_id, sort_key=lambda key, _pool: key.lower(), fill="description",
                      cells=lambda name, pool: pool_cells(pool, fleet.usage_history.get(name, ())))
    table.set_columns(POOL_COLUMNS)
    return table


class DashboardScreen(FleetScreen):
    VIEW_NAME = "Dashboard"
    FILTERABLE = False

    BINDINGS = [
        Binding("enter", "open", "Open", id="open"),
        Binding("tab", "app.focus_next", "Next panel", show=False),
        Binding("C", "check_all", "Check all", id="check_all"),
        Binding("w", "app.view('workers')", "Workers", id="goto_workers"),
        Binding("p", "app.view('pools')", "Pools", id="goto_pools"),
        Binding("a", "app.view('advisor')", "Advisor", id="goto_advisor"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Horizontal(id="tiles"):
            for status in STATUS_ORDER:
                yield Static(id=f"tile-{status}", classes=f"tile {status}")
        with Vertical(id="dashboard-body"):
            yield Static(id="advisor-line")
            yield Static(Text("Pools", style="bold"), classes="section-title", id="pools-title")
            yield pools_table("pools-table", self.wapp.fleet)
            yield Static(Text("Runs", style="bold"), classes="section-title", id="runs-title")
            runs = LiveTable(id="dashboard-runs", sort_key=lambda key, _c: -int(key),
                             fill="reason")
            runs.set_columns(RUN_COLUMNS)
            yield runs
            yield Static(Text("Needs attention", style="bold"), classes="section-title",
                         id="attention-title")
            attention = LiveTable(id="attention-table", sort_key=self._attention_order,
                                  fill="reason", cells=lambda _name, w: attention_cells(w))
            attention.set_columns([("status", "Status", 14), ("name", "Worker", 28, 0, 22),
                                   ("checked", "Checked", 9, 1),
                                   ("reason", "Reason", None, 0, 24)])
            yield attention
            yield Static(id="all-clear")
        yield from self.compose_bottom()

    @staticmethod
    def _attention_order(_key: str, worker: Worker) -> Any:
        return attention_rank(worker)

    _attention_version = -1

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(5.0, self._tick)
        self.query_one("#attention-table").focus()

    def _tick(self) -> None:
        # Sparklines and ages move on with the clock; only rows on screen are redrawn.
        for table in self.query(LiveTable):
            table.refresh_cells()
        self._attention_version = -1
        self.fleet_changed(None)

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        fleet = self.wapp.fleet
        counts = fleet.counts()
        for status in STATUS_ORDER:
            glyph, style = display.SYMBOLS[status], STATUS_STYLE[status]
            tile = self.query_one(f"#tile-{status}", Static)
            # The symbol beside the count and the word below, alone: "unavailable" keeps
            # its letters in a tile of an 80-column screen.
            tile.update(Text.assemble((f"{glyph} ", style),
                                      (f"{counts.get(status, 0)}\n", f"bold {style}"),
                                      (status, style)))
            tile.set_class(counts.get(status, 0) > 0, "nonzero")
        self.query_one("#pools-table", LiveTable).sync(fleet.pools)
        self._show_pool_totals()
        self._show_advice()
        now = datetime.now(UTC)
        # Running or waiting runs and the last day's failures (what an operator acts on),
        # then the latest runs whatever they did, so the panel is never a blank on a calm day.
        runs = fleet_runs(self)
        active = {key: run for key, run in runs.items()
                  if run.status in ("queued", "running", "waiting")
                  or (run.status in ("failed", "interrupted") and run.finished_at
                      and (now - datetime.fromisoformat(run.finished_at)).days < 1)}
        for key in sorted(runs, key=int, reverse=True)[:RECENT_RUNS]:
            active.setdefault(key, runs[key])
        self.query_one("#dashboard-runs", LiveTable).sync(
            {key: run_cells(run, now) for key, run in active.items()})
        running = sum(1 for r in active.values() if r.finished_at is None)
        failed = sum(1 for r in active.values() if r.status in ("failed", "interrupted"))
        self.query_one("#runs-title", Static).update(Text.assemble(
            ("Runs", "bold"), (f"  {running} running or waiting · {failed} failed recently",
                               "bright_black")))
        if self._attention_version == fleet.worker_version:
            return  # no worker changed: the attention list is as it was
        self._attention_version = fleet.worker_version
        attention = {name: w for name, w in fleet.workers.items()
                     if w.status in NEEDS_ATTENTION}
        table = self.query_one("#attention-table", LiveTable)
        table.sync(attention)
        all_clear = self.query_one("#all-clear", Static)
        if attention or not fleet.workers:
            all_clear.update("")
        else:
            all_clear.update(Text(f"✓ All {len(fleet.workers)} workers are healthy or "
                                  "disabled.", style="green"))
        self.query_one("#attention-title", Static).update(Text.assemble(
            ("Needs attention", "bold"), (f"  {len(attention)}", "bright_black")))

    def _show_pool_totals(self) -> None:
        pools = self.wapp.fleet.pools.values()
        leased = sum(p.leased for p in pools)
        capacity = sum(p.capacity for p in pools)
        queued = sum(p.queued for p in pools)
        busy = sum(1 for p in pools if p.capacity and p.leased / p.capacity >= 0.9)
        title = Text.assemble(("Pools", "bold"), (f"  {len(self.wapp.fleet.pools)} · "
                                                  f"{leased}/{capacity} slots leased",
                                                  "bright_black"))
        if queued:
            title.append(f" · {queued} steps queued", style="bold red")
        if busy:
            title.append(f" · {busy} at 90% or more", style="yellow")
        self.query_one("#pools-title", Static).update(title)

    def _show_advice(self) -> None:
        advice = self.wapp.fleet.advice
        line = self.query_one("#advisor-line", Static)
        if advice is None:
            line.update("")
        elif not advice.findings:
            line.update(Text("✓ Advisor: the fleet follows the worker recommendations.",
                             style="green"))
        else:
            critical = advice.critical
            line.update(Text.assemble(
                ("⚑ Advisor: ", "bold red" if critical else "bold yellow"),
                plural(advice.findings, "finding") + (f", {critical} critical" if critical
                                                  else ""),
                ("  (a to see them)", "bright_black")))

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self._open(event.data_table)

    def action_open(self) -> None:
        focused = self.focused
        if isinstance(focused, LiveTable):
            self._open(focused)

    def _open(self, table: Any) -> None:
        key = table.selected_key
        if not key:
            return
        if table.id == "dashboard-runs":
            from console.screens.run import RunScreen

            self.app.push_screen(RunScreen(int(key)))
        elif table.id == "attention-table":
            from console.screens.worker_detail import WorkerDetailScreen

            self.app.push_screen(WorkerDetailScreen(key))
        else:
            self.app.switch_mode("pools")
            screen = self.app.screen
            if hasattr(screen, "select_pool"):
                screen.select_pool(key)

    def action_check_all(self) -> None:
        self.wapp.check_workers(None)
