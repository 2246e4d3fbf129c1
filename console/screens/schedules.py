"""The Schedules view: every schedule, when it launches next (in its own time zone, and
how soon), as whom, and what came of its last time. `space` pauses or resumes the one
selected, `enter` opens its last run, `d` removes it. Read again every few seconds (the
next times move on their own) and whenever a schedule changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.binding import Binding

from console.client import ApiError
from console.display import due
from console.screens.read_table import ReadTableScreen
from console.state import matches, plain, safe
from console.widgets.live_table import ColumnSpec
from wire.paths import segment

if TYPE_CHECKING:
    from wire.schedules import Schedule

COLUMNS: list[ColumnSpec] = [
    ("name", "Schedule", 20, 0, 14), ("runbook", "Runbook", 20, 1, 14), ("env", "Env", 12, 0, 10),
    ("when", "When", 46, 3, 20), ("next", "Next", 31), ("last", "Last", None, 2)]


class SchedulesScreen(ReadTableScreen):
    VIEW_NAME = "Schedules"
    TABLE_ID = "schedules-table"
    COLUMNS = COLUMNS
    FILL = "last"
    PATH = "/api/schedules"
    READ_EVERY_S = 5.0

    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/resume", id="toggle_pause"),
        Binding("enter", "open_last_run", "Last run", id="open_last_run"),
        Binding("d", "remove_schedule", "Remove", id="remove_schedule"),
    ]

    def row(self, item: Any, text: str) -> list[Text] | None:
        schedule: Schedule = item
        if not matches(text, schedule.name, schedule.runbook, schedule.environment,
                       schedule.person):
            return None
        return [safe(schedule.name, 100), safe(schedule.runbook, 100),
                safe(schedule.environment, 100),
                safe(f"{schedule.explained} ({schedule.timezone})", 200),
                Text("paused", style="yellow") if schedule.paused
                else Text(due(schedule.next_at, schedule.timezone)),
                _last(schedule)]

    def action_toggle_pause(self) -> None:
        item = self.items.get(self.table.selected_key or "")
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
        self.read_items()

    def action_open_last_run(self) -> None:
        from console.screens.run import RunScreen

        item = self.items.get(self.table.selected_key or "")
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
        self.read_items()


def _last(item: Schedule) -> Text:
    said = item.last_outcome or "not yet due"
    style = ("red" if "not launched" in said else "yellow" if "missed" in said
             else "" if item.last_outcome else "bright_black")
    return Text(plain(said, 300), style=style)
