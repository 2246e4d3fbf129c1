"""The Runbooks view: every runbook, its steps, and `r` to launch the selected one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from console.client import ApiError
from console.display import due
from console.screens.base import FleetScreen
from console.state import matches, plain, safe
from console.typed import view
from console.widgets.live_table import LiveTable
from wire.paths import segment

if TYPE_CHECKING:
    from wire.runbook import RunbookDef
    from wire.schedules import Schedule


class RunbooksScreen(FleetScreen):
    VIEW_NAME = "Runbooks"

    BINDINGS = [
        Binding("r", "launch", "Run", id="launch"),
        Binding("enter", "launch", "Run", show=False),
        Binding("e", "edit", "Edit", id="edit"),
        Binding("n", "new", "New runbook", id="new"),
        Binding("d", "remove", "Remove", id="remove"),
    ]

    _detail_of: str | None = None  # the runbook whose steps the panel shows

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="runbooks-body"):
            table = LiveTable(id="runbooks-table", sort_key=lambda key, _c: key.lower(),
                              fill="description")
            table.set_columns([("name", "Runbook", 34, 0, 22), ("steps", "Steps", 6),
                               ("variables", "Variables", 28, 1, 16),
                               ("description", "Description", None, 2)])
            yield table
            yield Static(id="runbook-detail", classes="panel")
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#runbooks-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        text = self.filter_text
        books = self.wapp.fleet.runbooks
        self.table.sync({
            name: [safe(name, 100), Text(str(book.steps)),
                   safe(", ".join(book.variables), 100), safe(book.description, 300)]
            for name, book in books.items()
            if matches(text, name, book.description)
        })
        if self.table.selected_key != self._detail_of:
            # The first row is selected without a highlight event: its steps show at once.
            self.show_detail()

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self.show_detail()

    @work(exclusive=True, group="runbook-detail", exit_on_error=False)
    async def show_detail(self) -> None:
        name = self._detail_of = self.table.selected_key
        panel = self.query_one("#runbook-detail", Static)
        if not name:
            panel.update("")
            return
        try:
            book: RunbookDef = view(await self.wapp.api.get(f"/api/runbooks/{segment(name)}"))
            timed: list[Schedule] = view(await self.wapp.api.get(
                "/api/schedules", params={"runbook": name}))
        except ApiError as exc:
            panel.update(Text(str(exc), style="red"))
            return
        panel.update(Group(runbook_summary(book), *schedule_lines(timed)))

    def action_edit(self) -> None:
        from console.screens.editor import RunbookEditor

        name = self.table.selected_key
        if name:
            self.app.push_screen(RunbookEditor(name))

    def action_new(self) -> None:
        from console.screens.editor import RunbookEditor

        self.app.push_screen(RunbookEditor())

    def action_remove(self) -> None:
        from console.screens.modals import ConfirmDialog

        name = self.table.selected_key
        if not name:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.wapp.call_api("Remove runbook", "DELETE", f"/api/runbooks/{segment(name)}",
                                   done=f"Removed runbook {name}.")

        self.app.push_screen(ConfirmDialog(
            f"Remove runbook {name}?", "Its past runs keep their own copy of it; "
            "`workdeck runbook export` first keeps a file of it.", confirm="Remove"),
            answered)

    def action_launch(self) -> None:
        from console.screens.launch import LaunchDialog

        name = self.table.selected_key
        if name:
            self.app.push_screen(LaunchDialog(name))


def schedule_lines(timed: list[Schedule]) -> list[Text]:
    """The runbook's schedules under its steps: when each launches next, and where."""
    if not timed:
        return []
    lines = [Text(""), Text("Schedules", style="bold")]
    for item in timed:
        line = Text("  ") + safe(item.name, 100) + Text(f" on {plain(item.environment)}: ")
        line += safe(f"{item.explained} ({item.timezone}), ", 200)
        line += (Text("paused", style="yellow") if item.paused
                 else Text(f"next {due(item.next_at, item.timezone)}"))
        lines.append(line)
    return lines


def runbook_summary(book: RunbookDef) -> Table:
    table = Table(box=None, show_header=True, header_style="bold", padding=(0, 1),
                  expand=True)
    table.add_column("#", width=3)
    table.add_column("Step", ratio=2)
    table.add_column("Pool", ratio=2)
    table.add_column("Runs on", ratio=1)
    table.add_column("When", ratio=1)
    for position, step in enumerate(book.steps, 1):
        kind = "manual" if step.manual is not None else (
            "every worker" if step.run_on == "all" else "one worker")
        pool = step.pool or "(default pool)"
        if step.pool in book.pools:
            pool = f"{step.pool} (by environment)"
        table.add_row(str(position), safe(step.name, 100), safe(pool, 100), kind,
                      step.condition)
    return table
