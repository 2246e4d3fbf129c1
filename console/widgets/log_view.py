"""A run's log: one section per step, follow mode, toggles, search; bounded in memory."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import RichLog

MAX_LINES = 20_000  # kept in the console; the server keeps every line


def is_error(line: dict[str, Any]) -> bool:
    text = line["text"].lower()
    return (line["stream"] == "stderr" and ("error" in text or "fatal" in text or
                                           "fail" in text)) or text.startswith("error")


class LogView(RichLog):
    """Lines arrive as dicts from the server; the view re-renders them on a toggle."""

    following: reactive[bool] = reactive(True)
    pending: reactive[int] = reactive(0)  # lines arrived while not following

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, wrap=False, markup=False, highlight=False,
                         auto_scroll=True, **kwargs)
        self.entries: deque[dict[str, Any]] = deque(maxlen=MAX_LINES)
        self.timestamps = True
        self.only_step: int | None = None
        self._offsets: deque[tuple[int, int]] = deque(maxlen=MAX_LINES)  # (seq, first line)
        self._last_section: tuple[int, str] | None = None
        self._user_scrolled = False

    # -------------------------------------------------------- writing

    def add_lines(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            self.entries.append(line)
            if self.only_step is None or line["step"] == self.only_step:
                self._write(line)
        if not self.following:
            self.pending += len(lines)

    def _write(self, line: dict[str, Any]) -> None:
        section = (line["step"], line["worker"])
        if line["step"] and section != self._last_section:
            self._last_section = section
            header = Text(f"── step {line['step']}" + (f" · {line['worker']}"
                                                        if line["worker"] else "") + " ",
                          style="bold cyan")
            self.write(header, scroll_end=self.following)
        self._offsets.append((line["seq"], len(self.lines)))
        self.write(self.render_entry(line), scroll_end=self.following)

    def render_entry(self, line: dict[str, Any]) -> Text:
        text = Text()
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
        self.clear()
        self._offsets.clear()
        self._last_section = None
        for line in self.entries:
            if self.only_step is None or line["step"] == self.only_step:
                self._write(line)
        if self.following:
            self.scroll_end(animate=False)

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
        self.auto_scroll = following
        if following:
            self.pending = 0
            self.scroll_end(animate=False)

    # -------------------------------------------------------- finding

    def jump_to(self, seq: int) -> bool:
        for line_seq, offset in self._offsets:
            if line_seq == seq:
                self.following = False
                self.scroll_to(y=max(0, offset - self.size.height // 3), animate=False)
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
