"""A run's log: one section per step, follow mode, toggles, search; bounded in memory.

Only the lines on screen are rendered (a virtual scroll view, as Toolong does), so a
flood of output costs the console an append per line, not a layout of the whole log.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.state import plain
from wire.logcodec import is_error

MAX_LINES = 50_000  # kept in the console; the server keeps every line
STRIP_CACHE = 512


class LogView(ScrollView, can_focus=True):
    """Lines arrive as dicts from the server; rows are (entry, wrapped piece) pairs."""

    DEFAULT_CSS = """
    LogView { background: $surface; }
    """

    following: reactive[bool] = reactive(True)
    pending: reactive[int] = reactive(0)  # lines arrived while not following

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: deque[dict[str, Any]] = deque(maxlen=MAX_LINES)
        self.timestamps = True
        self.wrap = False
        self.only_step: int | None = None
        self._rows: deque[tuple[dict[str, Any] | None, Text | None, int]] = deque()
        self._last_section: tuple[int, str] | None = None
        self._widest = 0
        self._strips: OrderedDict[tuple[int, int, int, bool], Strip] = OrderedDict()
        self._user_scrolled = False

    # -------------------------------------------------------- writing

    def add_lines(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            if len(self.entries) == self.entries.maxlen:
                self._drop_oldest()
            self.entries.append(line)
            if self.only_step is None or line["step"] == self.only_step:
                self._add_rows(line)
        if not self.following and lines:
            self.pending += len(lines)
        self._resize()

    def _drop_oldest(self) -> None:
        oldest = self.entries.popleft()
        while self._rows and (self._rows[0][0] is oldest or self._rows[0][0] is None):
            self._rows.popleft()

    def _add_rows(self, line: dict[str, Any]) -> None:
        section = (line["step"], line["worker"])
        if line["step"] and section != self._last_section:
            self._last_section = section
            header = Text(f"── step {line['step']}" + (f" · {plain(line['worker'], 100)}"
                                                        if line["worker"] else "") + " ",
                          style="bold cyan")
            self._rows.append((None, header, 0))
        # Counted, not rendered: a flood must cost an append per line, not a layout.
        width = len(line["text"]) + (13 if self.timestamps else 0) + 2
        if self.wrap and self.size.width > 0 and width > self.size.width:
            pieces = -(-width // self.size.width)
            self._rows.extend((line, None, piece) for piece in range(pieces))
        else:
            self._rows.append((line, None, 0))
            self._widest = max(self._widest, width)

    def _resize(self) -> None:
        width = self.size.width if self.wrap else self._widest
        self.virtual_size = Size(width, len(self._rows))
        if self.following:
            self.scroll_to(y=max(0, len(self._rows) - self.size.height), animate=False,
                           immediate=True)
        self.refresh()

    def render_entry(self, line: dict[str, Any]) -> Text:
        text = Text(no_wrap=True, end="")
        if self.timestamps:
            at = datetime.fromtimestamp(line["at"]).strftime("%H:%M:%S.%f")[:-3]
            text.append(at + " ", style="bright_black")
        if line["stream"] == "stderr":
            text.append("▌", style="red")
            text.append(line["text"], style="red" if is_error(line) else "yellow")
        elif line["stream"] == "workdeck":
            text.append("» " + line["text"], style="italic cyan")
        else:
            text.append(line["text"])
        return text

    def rerender(self) -> None:
        self._rows.clear()
        self._strips.clear()
        self._last_section = None
        self._widest = 0
        for line in self.entries:
            if self.only_step is None or line["step"] == self.only_step:
                self._add_rows(line)
        self._resize()

    def on_resize(self) -> None:
        if self.wrap:
            self.rerender()

    # -------------------------------------------------------- drawing

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if index >= len(self._rows) or index < 0:
            return Strip.blank(width, self.rich_style)
        entry, header, piece = self._rows[index]
        key = (entry["seq"] if entry is not None else -id(header), piece,
               int(self.scroll_offset.x), self.timestamps)
        strip = self._strips.get(key)
        if strip is None:
            text = header if entry is None else self.render_entry(entry)
            if self.wrap:
                text = text[piece * width:(piece + 1) * width]
            segments = list(text.render(self.app.console))
            strip = Strip(segments).crop(int(self.scroll_offset.x),
                                         int(self.scroll_offset.x) + width)
            self._strips[key] = strip
            if len(self._strips) > STRIP_CACHE:
                self._strips.popitem(last=False)
        return strip.extend_cell_length(width, self.rich_style).apply_style(
            self.rich_style or Style())

    # -------------------------------------------------------- follow mode

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new < old and new < self.max_scroll_y:
            # Scrolling up pauses following; new lines are counted, not shown moving.
            self.following = False
        elif not self.following and new >= self.max_scroll_y and self._user_scrolled:
            self.following = True
        self._user_scrolled = True

    def watch_following(self, following: bool) -> None:
        if following:
            self.pending = 0
            self.scroll_end(animate=False)

    # -------------------------------------------------------- finding

    def jump_to(self, seq: int) -> bool:
        for index, (entry, _header, piece) in enumerate(self._rows):
            if entry is not None and entry["seq"] == seq and piece == 0:
                self.following = False
                self.scroll_to(y=max(0, index - self.size.height // 3), animate=False)
                return True
        return False

    def find(self, needle: str, after: int | None = None, backwards: bool = False
             ) -> dict[str, Any] | None:
        needle = needle.lower()
        shown = [e for e in self.entries if self.only_step is None
                 or e["step"] == self.only_step]
        if backwards:
            shown.reverse()
        for entry in shown:
            if after is not None and (entry["seq"] <= after if not backwards
                                      else entry["seq"] >= after):
                continue
            if needle in entry["text"].lower():
                return entry
        return None

    def first_error(self) -> dict[str, Any] | None:
        return next((e for e in self.entries if is_error(e)), None)

