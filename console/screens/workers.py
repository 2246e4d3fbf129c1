"""The Workers view: every worker in a live table, with verbs on the selected row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from console.screens.base import FleetScreen
from console.state import (
    SEVERITY,
    ago,
    disk_text,
    latency,
    load_text,
    matches,
    safe,
    status_text,
    worker_name_text,
)
from console.widgets.live_table import LiveTable

COLUMNS = [
    ("name", "Name", 26),
    ("status", "Status", 13),
    ("pools", "Pools", 34),
    ("latency", "Latency", 9),
    ("load", "Load", 8),
    ("disk", "Disk free", 9),
    ("checked", "Checked", 9),
    ("reason", "Reason", None),
]


def worker_cells(worker: dict[str, Any], now: datetime) -> list[Text]:
    return [
        worker_name_text(worker),
        status_text(worker["status"]),
        safe(", ".join(worker["pools"]), 120),
        latency(worker["latency_ms"]),
        load_text(worker),
        disk_text(worker),
        Text(ago(worker["checked_at"], now), style="bright_black"),
        safe(worker["reason"], 300),
    ]


def worker_matches(filter_text: str, worker: dict[str, Any]) -> bool:
    return matches(filter_text, worker["name"], worker["status"], worker["host"],
                   " ".join(worker["pools"]), worker["reason"],
                   "built-in" if worker.get("builtin") else "")


def quoted(name: str) -> str:
    return quote(name, safe="")


class WorkerVerbs:
    """The verbs on a selected worker, shared by the Workers view and the worker details."""

    def selected_worker(self) -> dict[str, Any] | None:
        """The worker the verbs act on; each view says where its selection is."""
        return None

    def action_check(self) -> None:
        worker = self.selected_worker()
        if worker:
            self.app.check_workers([worker["name"]])  # type: ignore[attr-defined]

    def action_trust(self) -> None:
        from console.screens.modals import TrustDialog

        worker = self.selected_worker()
        if not worker:
            return
        if worker.get("builtin"):
            self.app.notify("The built-in worker runs locally and has no host key.")
            return
        if not worker.get("presented_host_key"):
            self.app.notify(f"{worker['name']} has not presented an untrusted host key.",
                            markup=False)
            return

        def decided(trust: bool | None) -> None:
            if trust:
                self.app.call_api(  # type: ignore[attr-defined]
                    "Trust host key", "POST", f"/api/workers/{quoted(worker['name'])}/trust",
                    {"fingerprint": worker["presented_host_key"]},
                    done=f"Trusted {worker['presented_host_key']} for {worker['name']}.")

        self.app.push_screen(TrustDialog(worker), decided)

    def action_toggle_enabled(self) -> None:
        from console.screens.modals import ConfirmDialog

        worker = self.selected_worker()
        if not worker:
            return
        name = worker["name"]
        path = f"/api/workers/{quoted(name)}"
        if not worker["enabled"]:
            self.app.call_api("Enable worker", "POST", f"{path}/enable",  # type: ignore[attr-defined]
                              done=f"Enabled {name}.")
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self.app.call_api("Disable worker", "POST",  # type: ignore[attr-defined]
                                  f"{path}/disable", done=f"Disabled {name}.")

        self.app.push_screen(ConfirmDialog(
            f"Disable {name}?",
            "It will take no new work and will not be health-checked until enabled again.",
            confirm="Disable"), decided)


class WorkersScreen(WorkerVerbs, FleetScreen):
    VIEW_NAME = "Workers"

    BINDINGS = [
        Binding("enter", "open", "Details", id="open"),
        Binding("c", "check", "Check", id="check"),
        Binding("C", "check_all", "Check all", id="check_all"),
        Binding("t", "trust", "Trust key", id="trust"),
        Binding("d", "toggle_enabled", "Disable/enable", id="toggle_enabled"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id="workers-table", sort_key=self._sort_key, fill="reason")
        table.set_columns(COLUMNS)
        yield table
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(2.0, self._refresh_ages)

    @staticmethod
    def _sort_key(key: str, _cells: Any) -> Any:
        return key.lower()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#workers-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        workers = self.wapp.fleet.workers
        now = datetime.now(UTC)
        text = self.filter_text
        if changed is None:
            self.table.sync({name: worker_cells(w, now) for name, w in workers.items()
                             if worker_matches(text, w)})
        else:
            self.table.upsert({
                name: worker_cells(workers[name], now)
                if name in workers and worker_matches(text, workers[name]) else None
                for name in changed if name in workers or name in self.table.row_keys()
            })
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        shown, total = self.table.row_count, len(self.wapp.fleet.workers)
        self.query_one("#view-title").update(Text.assemble(
            ("Workers", "bold"), (f"  {shown}/{total}" if shown != total else f"  {total}",
                                  "bright_black")))

    def _refresh_ages(self) -> None:
        # Only the "Checked" cells whose text changes are touched.
        workers = self.wapp.fleet.workers
        now = datetime.now(UTC)
        self.table.upsert({
            name: worker_cells(workers[name], now) for name in self.table.row_keys()
            if name in workers
        })

    def selected_worker(self) -> dict[str, Any] | None:
        key = self.table.selected_key
        return self.wapp.fleet.workers.get(key) if key else None

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from console.screens.worker_detail import WorkerDetailScreen

        worker = self.selected_worker()
        if worker:
            self.app.push_screen(WorkerDetailScreen(worker["name"]))

    def action_check_all(self) -> None:
        names = self.table.row_keys() if self.filter_text else None
        self.wapp.check_workers(names)


def attention_rank(worker: dict[str, Any]) -> tuple[int, str]:
    return SEVERITY.get(worker["status"], 9), worker["name"].lower()
