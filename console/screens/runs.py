"""The Runs view: run history, live, with a filter; `enter` opens a run's steps and log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding

from console.client import ApiError
from console.display import duration
from console.display import started as started_at
from console.screens.base import FleetScreen
from console.state import matches, plain, run_status_text, safe
from console.typed import view
from console.widgets.live_table import ColumnSpec, LiveTable

if TYPE_CHECKING:
    from wire.runs import Run, RunSummary

# Narrow: which run, where and how it went stay; who, when and how long give way.
COLUMNS: list[ColumnSpec] = [
    ("id", "Run", 6), ("runbook", "Runbook", 30, 0, 16), ("environment", "Environment", 13, 0, 11),
    ("status", "Status", 14), ("started", "Started", 16, 3), ("duration", "Duration", 9, 2),
    ("actor", "By", 18, 4), ("reason", "Reason", None, 1, 20)]


def run_cells(run: RunSummary, now: datetime) -> list[Text]:
    started = run.started_at or run.created_at
    return [Text(str(run.id)), safe(run.runbook, 100), safe(run.environment, 60),
            run_status_text(run.status),
            Text(started_at(started, now), style="bright_black"),
            Text(duration(run.started_at, run.finished_at, now)),
            safe(run.actor, 60), safe(run.reason, 300)]


def fleet_runs(screen: Any) -> dict[str, RunSummary]:
    """The runs the console knows (from the push stream), read as their model."""
    return screen.wapp.fleet.runs


class RunsScreen(FleetScreen):
    VIEW_NAME = "Runs"

    BINDINGS = [
        Binding("enter", "open", "Open", id="open"),
        Binding("x", "cancel_run", "Cancel run", id="cancel_run"),
        Binding("R", "rerun", "Rerun", id="rerun"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id="runs-table", sort_key=lambda key, _c: -int(key), fill="reason")
        table.set_columns(COLUMNS)
        yield table
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#runs-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        # Durations of running runs move; everything else changes by push.
        now = datetime.now(UTC)
        runs = fleet_runs(self)
        self.table.upsert({key: run_cells(runs[key], now) for key in self.table.row_keys()
                           if key in runs and runs[key].finished_at is None})

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        now = datetime.now(UTC)
        text = self.filter_text
        self.table.sync({key: run_cells(run, now) for key, run in fleet_runs(self).items()
                         if matches(text, run.id, run.runbook, run.environment,
                                    run.status, run.actor, run.reason)})

    def on_live_table_row_selected(self, _event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from console.screens.run import RunScreen

        key = self.table.selected_key
        if key:
            self.app.push_screen(RunScreen(int(key)))

    def action_cancel_run(self) -> None:
        key = self.table.selected_key
        if key:
            confirm_cancel(self, int(key))

    def action_rerun(self) -> None:
        key = self.table.selected_key
        if key:
            self.rerun(int(key))

    @work(group="rerun", exit_on_error=False)
    async def rerun(self, run_id: int) -> None:
        from console.screens.run import offer_rerun

        try:
            run: Run = view(await self.wapp.api.get(f"/api/runs/{run_id}"))
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        if run.finished_at is None:
            self.notify(f"Run {run_id} is still {run.status}: rerun it once it has ended.",
                        markup=False)
            return
        offer_rerun(self, run)


def confirm_cancel(screen: Any, run_id: int) -> None:
    from console.screens.modals import ConfirmDialog

    run = fleet_runs(screen).get(str(run_id))
    if run and run.status in ("succeeded", "failed", "cancelled", "interrupted"):
        screen.notify(f"Run {run_id} already {run.status}.")
        return

    # A run already cancelled once is running its cleanup steps: this cancel stops those.
    cleaning = run is not None and run.reason.startswith("cancelled by")

    def decided(yes: bool | None) -> None:
        if yes:
            screen.wapp.call_api("Cancel run", "POST", f"/api/runs/{run_id}/cancel",
                                 done=f"Run {run_id}: cancel sent.")

    screen.app.push_screen(ConfirmDialog(
        f"Cancel run {run_id}?",
        "Its cleanup steps are stopped too; nothing more runs." if cleaning else
        "The running step's processes on the worker are killed; the steps marked "
        "'failure' or 'always' (the cleanup) still run. Cancel again to stop those too.",
        confirm="Cancel run", refuse="Keep it running"), decided)
