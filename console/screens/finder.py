"""The runbook finder: `l` (or `:run`) from anywhere, type to narrow, enter to launch.

Launching X on Production with its defaults is six keys from any view: `l`, a letter or
two of X, enter, `p` (the environment list jumps to Production), enter, and `y` to
confirm Production (tests/test_console_launch.py counts them)."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from console.screens.modals import type_into
from console.state import plain, safe


def ranked(names: list[str], query: str) -> list[str]:
    """Names holding the query's letters in order (any case), best first: those that
    start with it, then those with it as a word's start, then the rest by where the
    match begins and how spread it is."""
    wanted = query.lower().strip()
    if not wanted:
        return sorted(names, key=str.lower)
    scored = []
    for name in names:
        lower = name.lower()
        position, first, last = 0, -1, -1
        for char in wanted:
            found = lower.find(char, position)
            if found < 0:
                break
            first = found if first < 0 else first
            last, position = found, found + 1
        else:
            word_start = f" {wanted}" in f" {lower}"
            scored.append((not lower.startswith(wanted), not word_start, first,
                           last - first, lower, name))
    return [item[-1] for item in sorted(scored)]


class RunbookFinder(ModalScreen[str | None]):
    """Pick a runbook by typing part of its name."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                Binding("down", "move(1)", "Next", show=False),
                Binding("up", "move(-1)", "Previous", show=False)]

    def __init__(self, names: list[str], query: str = "") -> None:
        super().__init__()
        self.names = names
        self.query_text = query

    def compose(self) -> ComposeResult:
        with Vertical(id="finder-box", classes="dialog"):
            yield Static(Text("Launch a runbook", style="bold"))
            yield Input(value=self.query_text, placeholder="type part of its name",
                        id="finder-query")
            yield OptionList(id="finder-list")
            yield Static(Text("enter launches the highlighted one · ↑↓ move · esc back",
                              style="bright_black"))

    def on_mount(self) -> None:
        self._show(self.query_text)
        self.query_one("#finder-query", Input).focus()

    @property
    def listed(self) -> OptionList:
        return self.query_one("#finder-list", OptionList)

    def _show(self, query: str) -> None:
        found = ranked(self.names, query)
        self.listed.clear_options()
        self.listed.add_options([Option(safe(name, 100), id=name) for name in found[:200]])
        if found:
            self.listed.highlighted = 0

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    def on_key(self, event: events.Key) -> None:
        type_into(self.query_one("#finder-query", Input), event)

    def action_move(self, step: int) -> None:
        count = self.listed.option_count
        if count:
            current = self.listed.highlighted or 0
            self.listed.highlighted = max(0, min(count - 1, current + step))

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._pick()

    def on_option_list_option_selected(self, _event: OptionList.OptionSelected) -> None:
        self._pick()

    def _pick(self) -> None:
        index = self.listed.highlighted
        if index is None or not self.listed.option_count:
            typed = plain(self.query_one("#finder-query", Input).value, 60)
            self.notify(f"No runbook matches {typed!r}.", severity="warning", markup=False)
            return
        self.dismiss(self.listed.get_option_at_index(index).id)
