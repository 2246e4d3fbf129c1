"""The Approvals view: the runs waiting for an approval this person may give (a manual
step, or a start held by four eyes), oldest first; `a` approves and `x` refuses, each
asking for a note kept with the decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from console.display import started
from console.screens.base import FleetScreen
from console.state import matches, plain, safe
from console.widgets.live_table import ColumnSpec, LiveTable

if TYPE_CHECKING:
    from wire.runs import RunSummary

COLUMNS: list[ColumnSpec] = [
    ("id", "Run", 6), ("runbook", "Runbook", 26, 0, 16), ("environment", "Environment", 13, 0, 11),
    ("at", "Waits at", 9), ("since", "Launched", 16, 2), ("person", "By", 14, 1),
    ("prompt", "For", None, 0, 24)]


def waits_at(run: RunSummary) -> str:
    position = run.waiting.position if run.waiting else None
    return "start" if position == 0 else f"step {position}"


class ApprovalsScreen(FleetScreen):
    VIEW_NAME = "Approvals"

    BINDINGS = [
        Binding("a", "approve", "Approve", id="approve"),
        Binding("x", "refuse", "Refuse", id="refuse"),
        Binding("enter", "open", "Open", id="open"),
    ]

    _offered: bool | None = None  # whether a/x/enter were last offered

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id="approvals-table", sort_key=lambda key, _c: int(key),
                          fill="prompt")
        table.set_columns(COLUMNS)
        yield table
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#approvals-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        now = datetime.now(UTC)
        text = self.filter_text
        waiting = self.wapp.fleet.awaiting_approval()
        self.table.sync({str(run.id): [
            Text(str(run.id)), safe(run.runbook, 100), safe(run.environment, 60),
            Text(waits_at(run), style="yellow"),
            Text(started(run.created_at, now), style="bright_black"),
            safe(run.person or run.actor, 60),
            safe(run.waiting.prompt if run.waiting else "", 300)]
            for run in waiting if matches(text, run.id, run.runbook, run.environment,
                                          run.actor, run.waiting.prompt if run.waiting
                                          else "")})
        # Only when the keys on offer change: the footer rebuilds itself on every call.
        offered = self.selected() is not None
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve", "refuse", "open") and self.selected() is None:
            return None  # shown, dim: nothing waits for this person now
        return super().check_action(action, parameters)

    def selected(self) -> RunSummary | None:
        key = self.table.selected_key
        return self.wapp.fleet.runs.get(key) if key else None

    def on_live_table_row_selected(self, _event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from console.screens.run import RunScreen

        run = self.selected()
        if run is not None:
            self.app.push_screen(RunScreen(run.id))

    def action_approve(self) -> None:
        self._decide("approve", "Approve", "A note for the record (optional); enter approves")

    def action_refuse(self) -> None:
        self._decide("abort", "Refuse", "Why? (kept with the decision); enter refuses")

    def _decide(self, action: str, verb: str, prompt: str) -> None:
        from console.screens.modals import NoteDialog

        run = self.selected()
        if run is None:
            return
        what = "the start" if run.waiting and run.waiting.position == 0 else waits_at(run)

        def noted(note: str | None) -> None:
            if note is not None:
                self.wapp.call_api(f"{verb} run {run.id}", "POST",
                                   f"/api/runs/{run.id}/decide",
                                   {"action": action, "note": note},
                                   done=f"Run {run.id}: {verb.lower()}d.")

        self.app.push_screen(NoteDialog(
            plain(f"{verb} {what} of run {run.id} ({run.runbook} on {run.environment})?", 300),
            prompt), noted)
