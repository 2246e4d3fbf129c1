"""The Dashboard: fleet health at a glance, pools, and what needs attention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from console.screens.base import FleetScreen
from console.screens.runs import COLUMNS as RUN_COLUMNS
from console.screens.runs import run_cells
from console.screens.workers import attention_rank
from console.state import (
    SEVERITY,
    STATUS_ORDER,
    STATUS_STYLE,
    ago,
    safe,
    status_text,
    worker_name_text,
)
from console.widgets.live_table import LiveTable

NEEDS_ATTENTION = {"unhealthy", "unavailable", "warning", "unknown"}
RECENT_RUNS = 5


def health_bar(members: list[dict[str, Any]], width: int = 20) -> Text:
    """One block per worker (scaled down for big pools), worst first, coloured by status."""
    bar = Text()
    if not members:
        return Text("no workers", style="bright_black")
    ordered = sorted(members, key=lambda w: SEVERITY.get(w["status"], 9))
    step = max(1, -(-len(ordered) // width))
    for i in range(0, len(ordered), step):
        status = ordered[i]["status"]
        bar.append("■", style=STATUS_STYLE.get(status, ("", ""))[1])
    return bar


def pool_cells(pool: dict[str, Any], members: list[dict[str, Any]]) -> list[Text]:
    healthy = sum(1 for m in members if m["status"] == "healthy")
    enabled = [m for m in members if m["enabled"]]
    style = "red" if healthy == 0 and members else "yellow" if healthy < 2 else ""
    name = safe(pool.get("name", ""), 100)
    if pool.get("default"):
        name.append(" (default)", style="italic bright_black")
    return [
        name,
        Text(f"{healthy}/{len(members)}", style=style),
        health_bar(members),
        Text(str(sum(m["capacity"] for m in enabled))),
        safe(pool.get("description", ""), 200),
    ]


class DashboardScreen(FleetScreen):
    VIEW_NAME = "Dashboard"
    FILTERABLE = False

    BINDINGS = [
        Binding("enter", "open", "Open", id="open"),
        Binding("tab", "focus_next", "Next panel", show=False),
        Binding("C", "check_all", "Check all", id="check_all"),
        Binding("w", "app.switch_mode('workers')", "Workers", id="goto_workers"),
        Binding("p", "app.switch_mode('pools')", "Pools", id="goto_pools"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Horizontal(id="tiles"):
            for status in STATUS_ORDER:
                yield Static(id=f"tile-{status}", classes=f"tile {status}")
        with Vertical(id="dashboard-body"):
            yield Static(Text("Pools", style="bold"), classes="section-title")
            pools = LiveTable(id="pools-table", sort_key=lambda key, _c: key.lower(),
                              fill="description")
            pools.set_columns([("pool", "Pool", 40), ("healthy", "Healthy", 8),
                               ("bar", "Workers", 22), ("capacity", "Slots", 6),
                               ("description", "Description", None)])
            yield pools
            yield Static(Text("Runs", style="bold"), classes="section-title", id="runs-title")
            runs = LiveTable(id="dashboard-runs", sort_key=lambda key, _c: -int(key),
                             fill="reason")
            runs.set_columns(RUN_COLUMNS)
            yield runs
            yield Static(Text("Needs attention", style="bold"), classes="section-title",
                         id="attention-title")
            attention = LiveTable(id="attention-table", sort_key=self._attention_order,
                                  fill="reason")
            attention.set_columns([("status", "Status", 14), ("name", "Worker", 28),
                                   ("checked", "Checked", 9), ("reason", "Reason", None)])
            yield attention
            yield Static(id="all-clear")
        yield from self.compose_bottom()

    def _attention_order(self, key: str, _cells: Any) -> Any:
        worker = self.wapp.fleet.workers.get(key)
        return attention_rank(worker) if worker else (99, key)

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(5.0, lambda: self.fleet_changed(None))
        self.query_one("#attention-table").focus()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        fleet = self.wapp.fleet
        counts = fleet.counts()
        for status in STATUS_ORDER:
            glyph, style = STATUS_STYLE[status]
            tile = self.query_one(f"#tile-{status}", Static)
            tile.update(Text.assemble((f"{counts.get(status, 0)}\n", f"bold {style}"),
                                      (f"{glyph} {status}", style)))
            tile.set_class(counts.get(status, 0) > 0, "nonzero")
        pools = self.query_one("#pools-table", LiveTable)
        pools.sync({
            name: pool_cells(fleet.pools.get(name, {"name": name}), fleet.pool_members(name))
            for name in fleet.pool_names()
        })
        now = datetime.now(UTC)
        # Running or waiting runs and the last day's failures (what an operator acts on),
        # then the latest runs whatever they did, so the panel is never a blank on a calm day.
        active = {key: run for key, run in fleet.runs.items()
                  if run["status"] in ("queued", "running", "waiting")
                  or (run["status"] in ("failed", "interrupted") and run["finished_at"]
                      and (now - datetime.fromisoformat(run["finished_at"])).days < 1)}
        for key in sorted(fleet.runs, key=int, reverse=True)[:RECENT_RUNS]:
            active.setdefault(key, fleet.runs[key])
        self.query_one("#dashboard-runs", LiveTable).sync(
            {key: run_cells(run, now) for key, run in active.items()})
        running = sum(1 for r in active.values() if r["finished_at"] is None)
        failed = sum(1 for r in active.values() if r["status"] in ("failed", "interrupted"))
        self.query_one("#runs-title", Static).update(Text.assemble(
            ("Runs", "bold"), (f"  {running} running or waiting · {failed} failed recently",
                               "bright_black")))
        attention = {
            name: [status_text(w["status"]), worker_name_text(w),
                   Text(ago(w["checked_at"], now), style="bright_black"), safe(w["reason"], 300)]
            for name, w in fleet.workers.items() if w["status"] in NEEDS_ATTENTION
        }
        table = self.query_one("#attention-table", LiveTable)
        table.sync(attention)
        table.resort()
        all_clear = self.query_one("#all-clear", Static)
        if attention or not fleet.workers:
            all_clear.update("")
        else:
            all_clear.update(Text(f"✓ All {len(fleet.workers)} workers are healthy or "
                                  "disabled.", style="green"))
        self.query_one("#attention-title", Static).update(Text.assemble(
            ("Needs attention", "bold"), (f"  {len(attention)}", "bright_black")))

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
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
