"""The Workers view: every worker in a live table, with verbs on the selected row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from console.display import ago
from console.screens.base import FleetScreen
from console.screens.worker_verbs import WORKER_VERBS, WorkerVerbs
from console.state import (
    SEVERITY,
    Haystacks,
    disk_text,
    latency,
    load_text,
    safe,
    status_text,
    worker_name_text,
)
from console.widgets.live_table import ColumnSpec, LiveTable

if TYPE_CHECKING:
    from wire.workers import Worker

# (key, label, width, drop, least): on a narrow terminal the highest `drop` gives way
# first (console/widgets/live_table.py); who, how and why stay.
COLUMNS: list[ColumnSpec] = [
    ("name", "Name", 26, 0, 22),
    ("status", "Status", 15),
    ("leased", "Leased", 6),
    ("pools", "Pools", 34, 4, 16),
    ("latency", "Latency", 9, 3),
    ("load", "Load", 8, 5),
    ("disk", "Disk free", 9, 6),
    ("engine", "Engine", 10, 7),
    ("checked", "Checked", 9, 2),
    ("reason", "Reason", None, 0, 24),  # why a worker is not healthy: room to say it
]


def worker_cells(worker: Worker, now: datetime | None = None) -> list[Text]:
    now = now or datetime.now(UTC)
    status = status_text(worker.status)
    if worker.draining:
        status.append(" ⇣", style="yellow")
    return [
        worker_name_text(worker),
        status,
        Text(f"{worker.leased}/{worker.capacity}",
             style="bold" if worker.leased else "bright_black"),
        safe(", ".join(worker.pools), 120),
        latency(worker.latency_ms),
        load_text(worker),
        disk_text(worker),
        engine_text(worker),
        Text(ago(worker.checked_at, now), style="bright_black"),
        drain_note(worker) + safe(worker.reason, 300),
    ]


def drain_note(worker: Worker) -> Text:
    """What holds a worker's slots or keeps it from new steps (orphaned steps, draining),
    said before anything else about it."""
    text = Text()
    orphans = worker.orphans
    if orphans:
        text.append(f"orphan: {orphans} ", style="bold red")
        text.append_text(safe(f"({worker.orphan_reason})", 200))
        text.append("; " if worker.reason or worker.draining else "")
    if worker.draining:
        leases = worker.leased
        note = (f"draining: {leases} step{'s' if leases != 1 else ''} left" if leases
                else "drained: takes no new steps")
        text.append(note + ("; " if worker.reason else ""), style="yellow")
    return text


def worker_fields(worker: Worker) -> list[Any]:
    """What a filter looks in."""
    return [worker.name, worker.status, worker.host, " ".join(worker.pools),
            worker.reason, "built-in" if worker.builtin else "",
            "dynamic" if worker.dynamic else "",
            "draining" if worker.draining else "", worker.facts.container_engine or ""]


def engine_text(worker: Worker) -> Text:
    """The container engine, its version to the minor ("podman 4.3"); "none" in yellow
    where a check found none that answers."""
    engine = worker.facts.container_engine
    if engine is None:
        return Text("-", style="bright_black")
    if not engine:
        return Text("none", style="yellow")
    name, _, version = engine.partition(" ")
    return safe(f"{name} {'.'.join(version.split('.')[:2])}".strip(), 40)


class WorkersScreen(WorkerVerbs, FleetScreen):
    VIEW_NAME = "Workers"

    BINDINGS = [
        Binding("enter", "open", "Details", id="open"),
        # "Check all" beside "Check" in the footer.
        *WORKER_VERBS[:1],
        Binding("C", "check_all", "Check all", id="check_all"),
        *WORKER_VERBS[1:],
    ]

    def __init__(self) -> None:
        super().__init__()
        self._haystacks = Haystacks(worker_fields)
        self._shown_for = ""  # the filter the table's rows were chosen by

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id="workers-table", sort_key=self._sort_key, fill="reason",
                          cells=lambda _name, worker: worker_cells(worker))
        table.set_columns(COLUMNS)
        yield table
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(2.0, self._refresh_ages)
        # The filter's search text, made before the first key is typed into the filter.
        self.call_after_refresh(self._prime_search)

    def _prime_search(self) -> None:
        for name, worker in self.wapp.fleet.workers.items():
            self._haystacks.matches("-", name, worker)

    @staticmethod
    def _sort_key(key: str, _worker: Any) -> Any:
        return key.lower()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#workers-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        workers = self.wapp.fleet.workers
        text = self._shown_for = self.filter_text
        shown = self._haystacks.matches
        if changed is None:
            self.table.sync({name: w for name, w in workers.items() if shown(text, name, w)})
        else:
            self.table.upsert({
                name: workers[name]
                if name in workers and shown(text, name, workers[name]) else None
                for name in changed if name in workers or self.table.has_row(name)
            })
        self._update_subtitle()

    def filter_changed(self) -> None:
        text, previous = self.filter_text, self._shown_for
        self._shown_for = text
        if not (previous and text.startswith(previous)):
            self.fleet_changed(None)
            return
        # Typing on narrows the filter: only the rows shown can still match.
        workers, shown = self.wapp.fleet.workers, self._haystacks.matches
        self.table.sync({name: workers[name] for name in self.table.row_keys()
                         if name in workers and shown(text, name, workers[name])})
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        shown, total = self.table.row_count, len(self.wapp.fleet.workers)
        self.query_one("#view-title", Static).update(Text.assemble(
            ("Workers", "bold"), (f"  {shown}/{total}" if shown != total else f"  {total}",
                                  "bright_black")))

    def _refresh_ages(self) -> None:
        # "Checked 5s ago" moves on with the clock: the rows on screen are drawn again.
        self.table.refresh_cells()

    def selected_worker(self) -> Worker | None:
        key = self.table.selected_key
        return self.wapp.fleet.workers.get(key) if key else None

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from console.screens.worker_detail import WorkerDetailScreen

        worker = self.selected_worker()
        if worker:
            self.app.push_screen(WorkerDetailScreen(worker.name))

    def action_check_all(self) -> None:
        names = self.table.row_keys() if self.filter_text else None
        self.wapp.check_workers(names)


def attention_rank(worker: Worker) -> tuple[int, str]:
    return SEVERITY.get(worker.status, 9), worker.name.lower()
