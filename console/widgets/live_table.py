"""A DataTable that is kept in step with changing data by keyed, in-place edits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

Cells = Sequence[Text]


class LiveTable(DataTable):
    """Rows are keyed; an update touches only the cells that changed, never the whole table."""

    def __init__(self, *, sort_key: Callable[[str, Cells], Any] | None = None,
                 fill: str | None = None, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._cells: dict[str, list[Text]] = {}
        self._column_keys: list[str] = []
        self._auto_width: set[str] = set()
        self._sort_key = sort_key or (lambda key, cells: key)
        # The column that takes the width left over, so the table never scrolls sideways.
        self._fill = fill

    def set_columns(self, columns: Sequence[tuple[str, str, int | None]]) -> None:
        for key, label, width in columns:
            self.add_column(label, key=key, width=width)
            self._column_keys.append(key)
            if width is None and key != self._fill:
                self._auto_width.add(key)

    def on_resize(self) -> None:
        if self._fill is None or not self.columns:
            return
        others = sum(c.get_render_width(self) for k, c in self.columns.items()
                     if k.value != self._fill)
        column = self.columns[next(k for k in self.columns if k.value == self._fill)]
        column.auto_width = False
        column.width = max(12, self.scrollable_content_region.width - others
                           - 2 * self.cell_padding)
        # DataTable has no public way to resize a column; this flag makes it re-measure.
        self._require_update_dimensions = True
        self.refresh()

    @property
    def selected_key(self) -> str | None:
        if not self.row_count or self.cursor_row < 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # the cursor points past a row removed a moment ago
            return None

    def sync(self, rows: Mapping[str, Cells]) -> None:
        """Make the table show exactly `rows`: remove, update and add what differs."""
        with self.app.batch_update():
            for key in [k for k in self._cells if k not in rows]:
                self._remove(key)
            added = False
            for key, cells in rows.items():
                added |= self._upsert(key, cells)
            if added:
                self._resort()

    def upsert(self, updates: Mapping[str, Cells | None]) -> None:
        """Apply some changed rows (None removes a row)."""
        with self.app.batch_update():
            added = False
            for key, cells in updates.items():
                if cells is None:
                    self._remove(key)
                else:
                    added |= self._upsert(key, cells)
            if added:
                self._resort()

    def _upsert(self, key: str, cells: Cells) -> bool:
        current = self._cells.get(key)
        if current is None:
            self._cells[key] = list(cells)
            self.add_row(*cells, key=key)
            return True
        for index, (old, new) in enumerate(zip(current, cells, strict=True)):
            if old != new:
                current[index] = new
                column = self._column_keys[index]
                self.update_cell(key, column, new, update_width=column in self._auto_width)
        return False

    def _remove(self, key: str) -> None:
        if self._cells.pop(key, None) is not None:
            self.remove_row(key)

    def _resort(self) -> None:
        selected = self.selected_key
        # DataTable.sort hands the key function a row's cell values, not its key; the
        # first cell object of each row is ours, so its identity leads back to the key.
        order = {id(cells[0]): self._sort_key(key, cells) for key, cells in self._cells.items()}
        self.sort(key=lambda values: order[id(values[0])])
        if selected is not None and selected in self._cells:
            self.move_cursor(row=self.get_row_index(selected), scroll=False)

    def resort(self) -> None:
        self._resort()

    def row_keys(self) -> list[str]:
        return list(self._cells)

