"""The Schedules view: every schedule, when it launches next (in its own time zone, and
how soon), as whom, and what came of its last time. `space` pauses or resumes the one
selected, `enter` opens its last run, `d` removes it. Read again every few seconds (the
next times move on their own) and whenever a schedule changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding

from console.client import ApiError
from console.display import due
from console.screens.base import FleetScreen
from console.state import matches, plain, safe
from console.typed import view
from console.widgets.live_table import LiveTable
from wire.paths import segment

if TYPE_CHECKING:
    from wire.schedules import Schedule

COLUMNS = [("name", "Schedule", 20), ("runbook", "Runbook", 20), ("env", "Env", 12),
           ("when", "When", 46), ("next", "Next", 31), ("last", "Last", None)]
READ_EVERY_S = 5.0


class SchedulesScreen(FleetScreen):
    VIEW_NAME = "Schedules"

    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/resume", id="toggle_pause"),
        Binding("enter", "open_last_run", "Last run", id="open_last_run"),
        Binding("d", "remove_schedule", "Remove", id="remove_schedule"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.schedules: dict[str, Schedule] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id="schedules-table", fill="last",
                          sort_key=lambda key, _row: key.lower())
        table.set_columns(COLUMNS)
        yield table
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#schedules-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self.read_schedules()
        self.set_interval(READ_EVERY_S, self.read_schedules)

    @work(exclusive=True, group="schedules", exit_on_error=False)
    async def read_schedules(self) -> None:
        try:
            listed: list[Schedule] = view(await self.wapp.api.get("/api/schedules"))
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.schedules = {item.name: item for item in listed}
        self._show()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        self._show()

    def _show(self) -> None:
        text = self.filter_text
        self.table.sync({name: [
            safe(name, 100), safe(item.runbook, 100), safe(item.environment, 100),
            safe(f"{item.explained} ({item.timezone})", 200),
            Text("paused", style="yellow") if item.paused
            else Text(due(item.next_at, item.timezone)),
            _last(item)]
            for name, item in self.schedules.items()
            if matches(text, name, item.runbook, item.environment, item.person)})

    def action_toggle_pause(self) -> None:
        item = self.schedules.get(self.table.selected_key or "")
        if item is not None:
            self.set_paused(item.name, not item.paused)

    @work(group="schedules-change", exit_on_error=False)
    async def set_paused(self, name: str, paused: bool) -> None:
        try:
            await self.wapp.api.request("PATCH", f"/api/schedules/{segment(name)}",
                                        json={"paused": paused})
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.notify(f"{plain(name, 100)} " + ("is paused: it launches nothing until resumed."
                                             if paused else "goes on from now."),
                    markup=False)
        self.read_schedules()

    def action_open_last_run(self) -> None:
        from console.screens.run import RunScreen

        item = self.schedules.get(self.table.selected_key or "")
        if item is not None and item.last_run_id is not None:
            self.app.push_screen(RunScreen(item.last_run_id))
        elif item is not None:
            self.notify(f"{plain(item.name, 100)} has launched no run yet.", markup=False)

    def action_remove_schedule(self) -> None:
        from console.screens.modals import ConfirmDialog

        name = self.table.selected_key
        if not name:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_schedule(name)

        self.app.push_screen(ConfirmDialog(
            f"Remove schedule {name}?", "Its runs stay; nothing is launched for it again.",
            confirm="Remove"), answered)

    @work(group="schedules-change", exit_on_error=False)
    async def delete_schedule(self, name: str) -> None:
        try:
            await self.wapp.api.request("DELETE", f"/api/schedules/{segment(name)}")
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.notify(f"Removed schedule {plain(name, 100)}.", markup=False)
        self.read_schedules()


def _last(item: Schedule) -> Text:
    said = item.last_outcome or "not yet due"
    style = ("red" if "not launched" in said else "yellow" if "missed" in said
             else "" if item.last_outcome else "bright_black")
    return Text(plain(said, 300), style=style)
