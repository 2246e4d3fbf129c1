"""The Pools view: every pool, and the members of the selected one, live."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from console.screens.base import FleetScreen
from console.screens.dashboard import pool_cells
from console.screens.workers import COLUMNS, WorkerVerbs, worker_cells
from console.state import matches, safe
from console.widgets.live_table import LiveTable


class PoolsScreen(WorkerVerbs, FleetScreen):
    VIEW_NAME = "Pools"

    BINDINGS = [
        Binding("n", "new_pool", "New pool", id="new_pool"),
        Binding("enter", "open", "Open", id="open"),
        Binding("tab", "focus_next", "Pools/members", id="switch_panel"),
        Binding("c", "check", "Check", id="check"),
        Binding("t", "trust", "Trust key", id="trust"),
        Binding("d", "toggle_enabled", "Disable/enable", id="toggle_enabled"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="pools-body"):
            pools = LiveTable(id="pools-table", sort_key=lambda key, _c: key.lower(),
                              fill="description")
            pools.set_columns([("pool", "Pool", 40), ("healthy", "Healthy", 8),
                               ("bar", "Workers", 22), ("capacity", "Slots", 6),
                               ("description", "Description", None)])
            yield pools
            yield Static(id="members-title", classes="section-title")
            members = LiveTable(id="members-table", sort_key=lambda key, _c: key.lower(),
                                fill="reason")
            members.set_columns(COLUMNS)
            yield members
        yield from self.compose_bottom()

    @property
    def pools_table(self) -> LiveTable:
        return self.query_one("#pools-table", LiveTable)

    @property
    def members_table(self) -> LiveTable:
        return self.query_one("#members-table", LiveTable)

    def focus_main(self) -> None:
        self.pools_table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.pools_table.focus()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        fleet = self.wapp.fleet
        text = self.filter_text
        self.pools_table.sync({
            name: pool_cells(fleet.pools.get(name, {"name": name}), fleet.pool_members(name))
            for name in fleet.pool_names()
            if matches(text, name, fleet.pools.get(name, {}).get("description", ""))
        })
        self._show_members()

    def _show_members(self) -> None:
        pool = self.pools_table.selected_key
        fleet = self.wapp.fleet
        now = datetime.now(UTC)
        members = fleet.pool_members(pool) if pool else []
        self.members_table.sync({w["name"]: worker_cells(w, now) for w in members})
        title = Text("Members", style="bold")
        if pool:
            title.append("  of ")
            title.append_text(safe(pool, 100))
            description = fleet.pools.get(pool, {}).get("description")
            if description:
                title.append(" · ", style="bright_black")
                title.append_text(safe(description, 200))
        self.query_one("#members-title", Static).update(title)

    def on_data_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        if event.data_table.id == "pools-table":
            self._show_members()

    def select_pool(self, name: str) -> None:
        self.set_filter("")
        if name in self.pools_table.row_keys():
            self.pools_table.move_cursor(row=self.pools_table.get_row_index(name))
            self._show_members()

    def selected_worker(self) -> dict[str, Any] | None:
        if self.focused is not self.members_table:
            return None
        key = self.members_table.selected_key
        return self.wapp.fleet.workers.get(key) if key else None

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        if self.focused is self.members_table:
            from console.screens.worker_detail import WorkerDetailScreen

            worker = self.selected_worker()
            if worker:
                self.app.push_screen(WorkerDetailScreen(worker["name"]))
        elif self.members_table.row_count:
            self.members_table.focus()

    def action_new_pool(self) -> None:
        from console.screens.modals import NewPoolDialog

        def create(values: dict[str, str] | None) -> None:
            if values:
                self.wapp.call_api("New pool", "POST", "/api/pools", values,
                                   done=f"Created pool {values['name']}.")

        self.app.push_screen(NewPoolDialog(), create)
