"""A table kept in step with changing data by keyed edits, drawing only the rows on screen.

Rows are keyed; each holds its data (say, a worker) and, when the table is given a
`cells` function, its cells are made from that data only when the row is drawn, then
kept until the data changes. So ten thousand workers cost a dict entry each, not ten
thousand rows of laid-out cells, and a filter keystroke is a sort of keys, not a
rebuild. (Textual's DataTable lays every row out; it is too slow at that size.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.typed import View

Cells = Sequence[Text]
PADDING = 1  # spaces each side of a cell
STRIP_CACHE = 2000  # drawn rows kept
TYPE_AHEAD_S = 1.5  # a pause longer than this between keys starts a new name
FILL_LEAST = 12  # the fill column's narrowest


@dataclass
class Column:
    key: str
    label: str
    width: int | None  # None: takes the width left over (the fill column)
    # On a narrow terminal: columns with the highest `drop` give way first (the
    # rightmost of equals); 0, never. Before any gives way, a column may narrow to `least`
    # (a name is still told apart at 20 of its 30; a number is never cut).
    drop: int = 0
    least: int | None = None

    @property
    def narrowest(self) -> int:
        if self.width is None:
            return self.least or FILL_LEAST
        return self.least or self.width


ColumnSpec = tuple[str, str, int | None] | tuple[str, str, int | None, int] | \
    tuple[str, str, int | None, int, int]


def fit(columns: Sequence[Column], width: int) -> list[int | None]:
    """Each column's width in `width` cells (padding aside), None for one that gave way.

    Columns narrow first, then give way by their `drop`, until what is left fits; the room
    left over widens the narrowed ones again (leftmost first), then the fill column."""
    def need(shown: list[Column]) -> int:
        return sum(c.narrowest + 2 * PADDING for c in shown)

    shown = list(columns)
    while need(shown) > width:
        droppable = [c for c in shown if c.drop]
        if not droppable:
            break  # what cannot give way is cut at the edge
        shown.remove(max(droppable, key=lambda c: (c.drop, columns.index(c))))
    widths = {id(c): c.narrowest for c in shown}
    room = width - need(shown)
    for column in shown:
        if column.width is not None and room > 0:
            grow = min(room, column.width - widths[id(column)])
            widths[id(column)] += grow
            room -= grow
    fill = next((c for c in shown if c.width is None), None)
    if fill is not None and room > 0:
        widths[id(fill)] += room
    return [widths.get(id(c)) for c in columns]


class LiveTable(ScrollView, can_focus=True):
    """Rows keyed by name; the view shows them sorted, a cursor row, a fixed header."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
        # Listed in `?` help: how to type a name that starts with one of the view's keys.
        Binding("apostrophe", "type_name", "Go to a row: ' then the start of its name",
                show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "live-table--header", "live-table--cursor", "live-table--cursor-blurred",
        "live-table--hint"}

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        & > .live-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .live-table--hint { color: $text-muted; background: $panel; }
        & > .live-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .live-table--cursor-blurred {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        def __init__(self, table: LiveTable, key: str | None) -> None:
            super().__init__()
            self.data_table = table
            self.row_key = key

        @property
        def control(self) -> LiveTable:
            return self.data_table

    class RowSelected(RowHighlighted):
        """Enter on a row, or a click on the row under the cursor."""

    def __init__(self, *, sort_key: Callable[[str, Any], Any] | None = None,
                 fill: str | None = None, cells: Callable[[str, Any], Cells] | None = None,
                 name_of: Callable[[str, Any], str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns: list[Column] = []
        self._data: dict[str, Any] = {}
        self._order: list[str] = []  # keys as shown
        self._index: dict[str, int] | None = None  # key -> position in _order, built lazily
        self._made: dict[str, list[Text]] = {}  # cells made from data, for rows drawn
        self._sorts: dict[str, Any] = {}  # each row's sort key, made when its data changes
        # Drawn rows, by look and width, with the cells they were drawn from.
        self._strips: dict[tuple[str, str, int], tuple[list[Text], Strip]] = {}
        self._cells_of = cells or (lambda _key, data: list(data))
        self._sort_key = sort_key or (lambda key, _data: key)
        self._fill = fill
        # (width, each column's width at it, the labels hidden at it)
        self._fitted: tuple[int, list[int | None], list[str]] | None = None
        # Type-ahead: what the rows are named by (their key: a worker's name, a run's id).
        self._name_of = name_of or (lambda key, _data: key)
        self.typed: str | None = None  # the name being typed (None: none is)
        self._typed_at = 0.0
        self.cursor_row = 0

    # -------------------------------------------------------- columns and rows

    def set_columns(self, columns: Sequence[ColumnSpec]) -> None:
        """(key, label, width[, drop[, least]]) for each column: see Column."""
        self.columns = [Column(*spec) for spec in columns]
        self._fitted = None
        self._resize()

    def _fit(self) -> tuple[list[int | None], list[str]]:
        """Each column's width at this width, and the labels of those that gave way: made
        once per width (every drawn line asks)."""
        # The scrollbar's column aside; one cell of margin, as the fill always had.
        width = self.scrollable_content_region.width
        if self._fitted is None or self._fitted[0] != width:
            widths = fit(self.columns, width - 2 * PADDING)
            hidden = [c.label for c, w in zip(self.columns, widths, strict=True) if w is None]
            self._fitted = (width, widths, hidden)
        return self._fitted[1], self._fitted[2]

    @property
    def hidden_columns(self) -> list[str]:
        """The labels of the columns that gave way at this width."""
        return self._fit()[1]

    def _hint_lines(self) -> int:
        return 1 if self.typed is not None or self.hidden_columns else 0

    @property
    def row_count(self) -> int:
        return len(self._order)

    def row_keys(self) -> list[str]:
        return list(self._order)

    def has_row(self, key: str) -> bool:
        return key in self._data

    def refresh_cells(self) -> None:
        """Make the cells again as they are drawn: they show something that moves on by
        itself (an age), not only their data."""
        self._made.clear()
        self._strips.clear()
        self.refresh()

    def sync(self, rows: Mapping[str, Any]) -> None:
        """Make the table show exactly `rows` ({key: data}): remove, update, add."""
        gone = [key for key in self._data if key not in rows]
        for key in gone:
            del self._data[key]
            self._made.pop(key, None)
            self._sorts.pop(key, None)
        added = False
        for key, data in rows.items():
            added |= self._put(key, data)
        if added or gone:
            self._resort()
        else:
            self.refresh()

    def upsert(self, updates: Mapping[str, Any | None]) -> None:
        """Apply some changed rows (None removes a row)."""
        changed = False
        for key, data in updates.items():
            if data is None:
                if self._data.pop(key, None) is not None:
                    self._made.pop(key, None)
                    self._sorts.pop(key, None)
                    changed = True
            else:
                changed |= self._put(key, data)
        if changed:
            self._resort()
        else:
            self.refresh()

    def _put(self, key: str, data: Any) -> bool:
        """Store a row's data; True when the row is new (rows keep their place otherwise)."""
        old = self._data.get(key, _MISSING)
        if old is data:
            return False
        self._data[key] = data
        self._sorts[key] = self._sort_key(key, data)
        changed = not isinstance(data, dict | list | tuple | View) or old != data
        if old is not _MISSING and changed:
            self._made.pop(key, None)
        return old is _MISSING

    def resort(self) -> None:
        self._resort()

    def _resort(self) -> None:
        selected = self.selected_key
        self._order = sorted(self._data, key=self._sorts.__getitem__)
        self._index = None
        if selected is not None and selected in self._data:
            self.cursor_row = self.get_row_index(selected)
        self._clamp()
        self._resize()

    def _resize(self) -> None:
        # A header line, the rows, and the hint naming hidden columns when there are any.
        self.virtual_size = Size(self.scrollable_content_region.width,
                                 len(self._order) + 1 + self._hint_lines())
        self.refresh()

    def get_row_index(self, key: str) -> int:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self._order)}
        return self._index[key]

    def cells(self, key: str) -> list[Text]:
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = list(self._cells_of(key, self._data[key]))
        return made

    def get_cell(self, key: str, column: str) -> Text:
        index = next(i for i, c in enumerate(self.columns) if c.key == column)
        return self.cells(key)[index]

    # -------------------------------------------------------- cursor

    @property
    def selected_key(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def move_cursor(self, *, row: int, scroll: bool = True) -> None:
        before = self.selected_key
        self.cursor_row = row
        self._clamp()
        if scroll:
            self._scroll_to_cursor()
        self.refresh()
        if self.selected_key != before:
            self.post_message(self.RowHighlighted(self, self.selected_key))

    def _clamp(self) -> None:
        self.cursor_row = max(0, min(self.cursor_row, len(self._order) - 1))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1 - self._hint_lines())
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        page = max(1, self.scrollable_content_region.height - 2 - self._hint_lines())
        self.move_cursor(row=self.cursor_row + direction * page)

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select(self) -> None:
        if self._order:
            self.post_message(self.RowSelected(self, self.selected_key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        row = int(self.scroll_offset.y) + event.y - 1
        hint = self._hint_lines() and event.y == self.scrollable_content_region.height - 1
        if 0 <= row < len(self._order) and not hint:
            already = row == self.cursor_row
            self.move_cursor(row=row, scroll=False)
            if already or event.chain > 1:
                self.action_select()

    # -------------------------------------------------------- type-ahead

    @property
    def typing(self) -> bool:
        """A name is being typed: the next printable key goes on with it."""
        return self.typed is not None and time.monotonic() - self._typed_at < TYPE_AHEAD_S

    def on_key(self, event: events.Key) -> None:
        """Typing a name jumps to the first row (as shown) whose name starts with it.

        A key that means something in the view (`c`, `d`, `p`...) keeps its meaning, unless
        a name is being typed already or `'` came first: `'p-web` goes to p-web-01. Digits
        and the other letters start a name by themselves (`48` in the Runs view)."""
        typing = self.typing
        if typing and event.key == "backspace":
            typed = (self.typed or "")[:-1]
        elif typing and event.key == "escape":
            typed = None
        elif not (event.is_printable and event.character):
            return
        elif typing:
            typed = (self.typed or "") + event.character  # spaces too: names have them
        elif not event.character.isspace() and event.key not in self.screen.active_bindings:
            typed = event.character
        else:
            return  # the view's key
        event.stop()
        event.prevent_default()
        if typed is None:
            self._typing_over(now=True)
        else:
            self._type(typed)

    def action_type_name(self) -> None:
        self._type("")

    def _type(self, typed: str) -> None:
        had_hint = self._hint_lines()
        self.typed, self._typed_at = typed, time.monotonic()
        wanted = typed.lower()
        for row, key in enumerate(self._order if wanted else ()):
            if self._name_of(key, self._data[key]).lower().startswith(wanted):
                self.move_cursor(row=row)
                break
        self.set_timer(TYPE_AHEAD_S, self._typing_over)
        if self._hint_lines() != had_hint:
            self._resize()
        self.refresh()

    def _typing_over(self, now: bool = False) -> None:
        if self.typed is not None and (now or not self.typing):
            self.typed = None
            self._resize()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -------------------------------------------------------- drawing

    def on_resize(self) -> None:
        self._resize()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = self.get_component_rich_style("live-table--header")
            cells = [Text(c.label) for c in self.columns]
            return self._strip(cells, base + style, width)
        hidden = self.hidden_columns
        foot = min(self.scrollable_content_region.height, self.virtual_size.height) - 1
        if (self.typed is not None or hidden) and y == foot:
            # Fixed at the foot, as the header is at the top: the name being typed, or what
            # this width leaves out.
            said = (f" go to: {self.typed}▏" if self.typed is not None else
                    f" hidden at this width: {', '.join(hidden)}")
            hint = Text(said, style="italic", no_wrap=True, overflow="ellipsis")
            hint.truncate(width, overflow="ellipsis", pad=True)
            muted = base + self.get_component_rich_style("live-table--hint")
            return Strip(list(Segment.apply_style(hint.render(self.app.console), muted)))
        row = int(self.scroll_offset.y) + y - 1
        if row >= len(self._order):
            return Strip.blank(width, base)
        key = self._order[row]
        look = "plain"
        style = base
        if row == self.cursor_row:
            look = "cursor" if self.has_focus else "cursor-blurred"
            style = base + self.get_component_rich_style(f"live-table--{look}")
        cells = self.cells(key)
        cached = self._strips.get((key, look, width))
        if cached is not None and cached[0] is cells:
            return cached[1]
        strip = self._strip(cells, style, width)
        if len(self._strips) > STRIP_CACHE:
            self._strips.clear()
        self._strips[(key, look, width)] = (cells, strip)
        return strip

    def _strip(self, cells: Sequence[Text], style: Style, width: int) -> Strip:
        segments: list[Segment] = []
        console = self.app.console
        pad = Segment(" " * PADDING, style)
        for cell, cell_width in zip(cells, self._fit()[0], strict=False):
            if cell_width is None:
                continue
            text = cell.copy()
            text.no_wrap = True
            text.overflow = "ellipsis"
            text.truncate(cell_width, overflow="ellipsis", pad=True)
            segments.append(pad)
            segments.extend(Segment.apply_style(text.render(console), style))
            segments.append(pad)
        # Fewer, longer segments: Textual filters every segment of every line it paints.
        return Strip(segments).simplify().crop_extend(0, width, style)


_MISSING = object()
