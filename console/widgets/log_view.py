"""A run's log: one section per step, follow mode, toggles; a window over the whole log.

Only the lines on screen are rendered (a virtual scroll view, as Toolong does), so a
flood of output costs the console an append per line, not a layout of the whole log.

The view holds a window of at most MAX_LINES consecutive lines of the log. Lines before
it are said to be there by a line at the top, and brought in a page at a time when the
reader reaches the top (the screen asks the server: `NeedOlder`); `Home` asks for the
log's first page. While the window ends at the live end ("attached"), new lines join it;
a paused reader's window never drops lines under them: it stops growing instead, a line
at the bottom counts what came since, and `End`/`f` goes back to the live end.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime
from typing import Any, cast

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
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

    BINDINGS = [
        Binding("home", "first_page", "First line", show=False),
        Binding("end", "live_end", "Live end", show=False),
    ]

    following: reactive[bool] = reactive(True)
    pending: reactive[int] = reactive(0)  # lines arrived below what is shown

    class NeedOlder(Message):
        """The reader reached the top of the window and earlier lines exist."""

    class NeedFirstPage(Message):
        """The reader asked for the log's first line (Home) and it is not loaded."""

    class NeedLiveEnd(Message):
        """The reader asked for the live end (End) and the window is elsewhere."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: deque[dict[str, Any]] = deque()
        self.attached = True  # the window ends at the live end: new lines join it
        self.newest = 0  # the newest line number known, shown or not
        self.loading = False  # a page is being fetched (set by the screen)
        self.timestamps = True
        self.wrap = False
        self.only_step: int | None = None
        self._rows: deque[tuple[dict[str, Any] | None, Text | None, int]] = deque()
        self._last_section: tuple[int, str] | None = None
        self._widest = 0
        self._strips: OrderedDict[tuple[int, int, int, bool, bool], Strip] = OrderedDict()
        self._moving = 0  # > 0 while the view scrolls itself: that is not the reader
        self.marked: int | None = None  # the line a search or "first error" found
        self._end_due = False  # a move to the end is scheduled after the next refresh

    # -------------------------------------------------------- the window

    @property
    def first_seq(self) -> int:
        """The first line number in the window (1 when the window starts the log)."""
        return self.entries[0]["seq"] if self.entries else self.newest + 1

    @property
    def last_seq(self) -> int:
        return self.entries[-1]["seq"] if self.entries else self.newest

    @property
    def _top(self) -> int:  # 1 when a row at the top says lines come before
        return 1 if self.first_seq > 1 else 0

    @property
    def _bottom(self) -> int:  # 1 when a row at the bottom says newer lines exist
        return 1 if not self.attached and self.newest > self.last_seq else 0

    def add_lines(self, lines: list[dict[str, Any]]) -> None:
        """Lines from the live stream, in order."""
        if not lines:
            return
        self.newest = max(self.newest, lines[-1]["seq"])
        if not self.attached:
            self.pending += len(lines)
            self._resize()
            return
        if not self.following and len(self.entries) + len(lines) > MAX_LINES:
            # Dropping the oldest lines would move the text under a paused reader: the
            # window stops here instead, and says how many lines came since.
            self.attached = False
            self.pending += len(lines)
            self._resize()
            return
        for line in lines:
            if len(self.entries) >= MAX_LINES:
                self._drop_oldest()
            self.entries.append(line)
            if self.only_step is None or line["position"] == self.only_step:
                self._add_rows(line)
        if not self.following:
            self.pending += len(lines)
        self._resize()

    def prepend(self, lines: list[dict[str, Any]]) -> None:
        """Earlier lines, the ones right before the window; the reader's place stays."""
        if not lines:
            return
        anchor = self.top_seq()
        self.entries.extendleft(reversed(lines))
        while len(self.entries) > MAX_LINES:
            self.entries.pop()
            self.attached = False
        self.rerender(keep=anchor)

    def replace(self, lines: list[dict[str, Any]], *, attached: bool) -> None:
        """A new window (the first page, the lines around a match, the live end)."""
        self.entries = deque(lines)
        self.attached = attached
        if lines:
            self.newest = max(self.newest, lines[-1]["seq"])
        self.pending = 0 if attached else max(0, self.newest - self.last_seq)
        self.rerender()

    def holds(self, seq: int) -> bool:
        return bool(self.entries) and self.first_seq <= seq <= self.last_seq

    def _drop_oldest(self) -> None:
        oldest = self.entries.popleft()
        while self._rows and (self._rows[0][0] is oldest or self._rows[0][0] is None):
            self._rows.popleft()

    def _add_rows(self, line: dict[str, Any]) -> None:
        section = (line["position"], line["worker"])
        if line["position"] and section != self._last_section:
            self._last_section = section
            header = Text(f"── step {line['position']}" + (f" · {plain(line['worker'], 100)}"
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
        self.virtual_size = Size(width, len(self._rows) + self._top + self._bottom)
        if self.following:
            self._scroll_myself(max(0, self.virtual_size.height - self.size.height))
            if not self._end_due:
                # The new size is known to the scrollbars only after the next refresh:
                # go to the end again then (once, however many lines came meanwhile).
                self._end_due = True
                self.call_after_refresh(self._to_end)
        self.refresh()

    def _scroll_myself(self, y: float) -> None:
        self._moving += 1
        try:
            # force: before the first layout shows the scrollbar, scrolling is refused.
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._moving -= 1

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

    def rerender(self, keep: int | None = None) -> None:
        """Lay the rows out again (a toggle, a new window); `keep`: the line number to
        keep at the top of the screen, where the reader was."""
        self._rows.clear()
        self._strips.clear()
        self._last_section = None
        self._widest = 0
        for line in self.entries:
            if self.only_step is None or line["position"] == self.only_step:
                self._add_rows(line)
        self._resize()
        if keep is not None and not self.following:
            index = self._row_of(keep)
            if index is not None:
                self._scroll_myself(index)
        elif self.following:
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        self._end_due = False
        if self.following:
            self._scroll_myself(self.max_scroll_y)

    def on_resize(self) -> None:
        if self.wrap:
            self.rerender(keep=self.top_seq())
        elif self.following:
            self._to_end()

    def _row_of(self, seq: int) -> int | None:
        """The virtual row where line `seq` starts (None when it is not in the window)."""
        for index, (entry, _header, piece) in enumerate(self._rows):
            if entry is not None and entry["seq"] >= seq and piece == 0:
                return index + self._top
        return None

    def top_seq(self) -> int | None:
        """The line number at the top of the screen (None when none is shown)."""
        index = int(self.scroll_offset.y) - self._top
        for entry, _header, _piece in list(self._rows)[max(0, index):max(0, index) + 200]:
            if entry is not None:
                return int(entry["seq"])
        return None

    # -------------------------------------------------------- drawing

    def _marker(self, top: bool) -> Text:
        if top:
            earlier = self.first_seq - 1
            return Text(f"⋯ {earlier:,} earlier line{'s' if earlier != 1 else ''}: "
                        "scroll up or Home to load them", style="bold yellow")
        newer = self.newest - self.last_seq
        return Text(f"⋯ {newer:,} newer line{'s' if newer != 1 else ''}: End or f for the "
                    "live end", style="bold yellow")

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        total = len(self._rows) + self._top
        if (self._top and index == 0) or (self._bottom and index == total):
            marker = Strip(list(self._marker(index == 0).render(self.app.console)))
            return marker.crop(0, width).extend_cell_length(width, self.rich_style)
        index -= self._top
        if index >= len(self._rows) or index < 0:
            return Strip.blank(width, self.rich_style)
        entry, header, piece = self._rows[index]
        marked = entry is not None and entry["seq"] == self.marked
        key = (entry["seq"] if entry is not None else -id(header), piece,
               int(self.scroll_offset.x), self.timestamps, marked)
        strip = self._strips.get(key)
        if strip is None:
            # A row is a piece of a line, or a header (a step's title) with no line.
            text = cast(Text, header) if entry is None else self.render_entry(entry)
            if marked:
                text.stylize("reverse")
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
        if self._moving:
            return  # the view moved itself (new lines, a toggle): not the reader
        if new < old and new < self.max_scroll_y:
            # Scrolling up pauses following; new lines are counted, not shown moving.
            self.following = False
        elif not self.following and new >= self.max_scroll_y and self.attached and \
                new > old:
            self.following = True
        if new <= 0 < self.first_seq - 1 and not self.loading:
            self.post_message(self.NeedOlder())

    def watch_following(self, following: bool) -> None:
        if following:
            self.pending = 0
            self._to_end()

    def action_page_up(self) -> None:
        # A key up is the reader's own intent: it pauses following even when the scroll it
        # makes lands while the view is moving itself to new lines (as under load).
        self.following = False
        super().action_page_up()

    def action_scroll_up(self) -> None:
        self.following = False
        super().action_scroll_up()

    def action_live_end(self) -> None:
        if self.attached:
            self.following = True
        else:
            self.post_message(self.NeedLiveEnd())

    def show_top(self) -> None:
        """The window's first line at the top of the screen."""
        self.following = False
        self._scroll_myself(0)
        self.call_after_refresh(self._scroll_myself, 0)

    def action_first_page(self) -> None:
        self.following = False
        if self.first_seq > 1:
            self.post_message(self.NeedFirstPage())
        else:
            self._scroll_myself(0)

    # -------------------------------------------------------- finding

    def jump_to(self, seq: int) -> bool:
        """Show line `seq` (in the window) a third of the way down; False if it is not."""
        index = self._row_of(seq)
        if index is None or not self.holds(seq):
            return False
        self.following = False
        self._scroll_myself(max(0, index - self.size.height // 3))
        self._strips.clear()  # the marked line changed
        self.refresh()
        return True
