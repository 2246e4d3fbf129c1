"""A view of one table of things the push stream does not carry (the servers using the
store, the schedules), read again every few seconds: their figures move on their own
(heartbeats age, next times come closer)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult

from console.client import ApiError
from console.screens.base import FleetScreen
from console.state import matches, plain
from console.typed import view
from console.widgets.live_table import ColumnSpec, LiveTable


class ReadTableScreen(FleetScreen):
    TABLE_ID: ClassVar[str]
    COLUMNS: ClassVar[list[ColumnSpec]]
    FILL: ClassVar[str]  # the column that takes the width left over
    PATH: ClassVar[str]  # what is read: a list of things, each with a "name"
    READ_EVERY_S: ClassVar[float] = 3.0

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, Any] = {}  # by name, as last read

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id=self.TABLE_ID, fill=self.FILL, sort_key=self.sort_key)
        table.set_columns(self.COLUMNS)
        yield table
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one(f"#{self.TABLE_ID}", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self.read_items()
        self.set_interval(self.READ_EVERY_S, self.read_items)

    @work(exclusive=True, group="read-table", exit_on_error=False)
    async def read_items(self) -> None:
        try:
            listed = view(await self.wapp.api.get(self.PATH))
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.items = {item.name: item for item in listed}
        self.show_items()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        self.show_items()

    def show_items(self) -> None:
        text = self.filter_text
        rows = {name: self.row(item, text) for name, item in self.items.items()}
        self.table.sync({name: cells for name, cells in rows.items() if cells is not None})

    def sort_key(self, key: str, _row: Any) -> Any:
        return key.lower()

    def row(self, item: Any, text: str) -> list[Text] | None:
        """One thing's row, or None when the filter's words leave it out (a view says
        its own columns; a table of names by default)."""
        return [Text(plain(item.name, 100))] if matches(text, item.name) else None
