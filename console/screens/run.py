"""The Run view: a run's steps with their state, worker and duration, and its live log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from console.client import ApiError
from console.display import ago, duration
from console.screens.base import FleetScreen
from console.screens.run_log import RunLogReader
from console.screens.runs import confirm_cancel
from console.state import plain, run_status_text, safe
from console.widgets.live_table import LiveTable
from console.widgets.log_view import LogView

if TYPE_CHECKING:
    from wire.runs import Run

SHOWN_DECISIONS = 3  # the latest decisions in the headline; `runs show` lists them all
DECISION_KEYS = {"continue": "c", "skip": "s", "retry": "r", "approve": "a", "abort": "A"}


class RunScreen(RunLogReader):
    VIEW_NAME = "Run"
    FILTERABLE = False

    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("f", "follow", "Follow", id="follow"),
        Binding("t", "timestamps", "Timestamps", id="timestamps"),
        Binding("w", "wrap", "Wrap", id="wrap"),
        Binding("slash", "search", "Search", id="search"),
        Binding("n", "next_match", "Next", show=False, id="next_match"),
        Binding("N", "previous_match", "Previous", show=False, id="previous_match"),
        Binding("e", "first_error", "First error", id="first_error"),
        Binding("enter", "only_step", "This step only", show=False, id="only_step"),
        Binding("x", "cancel_run", "Cancel run", id="cancel_run"),
        Binding("c", "decide('continue')", "Continue", id="decide_continue"),
        Binding("s", "decide('skip')", "Skip", id="decide_skip"),
        Binding("r", "decide('retry')", "Retry", id="decide_retry"),
        Binding("a", "decide('approve')", "Approve", id="decide_approve"),
        Binding("A", "decide('abort')", "Abort", id="decide_abort"),
        Binding("R", "rerun", "Rerun", id="rerun"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self._offered: tuple[tuple[str, ...], bool] | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="run-body"):
            yield Static(id="run-headline")
            steps = LiveTable(id="steps-table", sort_key=_step_order, fill="reason")
            steps.set_columns([("position", "#", 3), ("name", "Step", 28, 0, 16),
                               ("worker", "Worker", 24, 2, 16), ("status", "Status", 13),
                               ("attempt", "Try", 3, 3), ("duration", "Duration", 9, 1),
                               ("reason", "Why", None, 0, 30)])  # why it failed
            yield steps
            yield Static(id="log-status")
            yield LogView(id="run-log")
            yield Input(placeholder="search the log (enter: find, n/N: next/previous)",
                        id="log-search", classes="hidden", compact=True)
        yield from self.compose_bottom()

    @property
    def steps(self) -> LiveTable:
        return self.query_one("#steps-table", LiveTable)

    def on_mount(self) -> None:
        super().on_mount()
        self.log_view.focus()
        self.follow_log()
        self.set_interval(1.0, self._tick)
        self.watch(self.log_view, "following", lambda _v: self._show_log_status())
        self.watch(self.log_view, "pending", lambda _v: self._show_log_status())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        run, fleet = self.shown, self.wapp.fleet
        if action == "decide":
            waiting = run.waiting if run else None
            if run is None or waiting is None or parameters[0] not in waiting.actions:
                return False
            if parameters[0] == "approve":
                return fleet.may_approve(run)  # never their own launch under four eyes
            need = "approve" if "approve" in waiting.actions else "decide"
            return fleet.may(need, run.environment)
        if action == "cancel_run":
            return run is not None and run.finished_at is None and fleet.may(
                "cancel", run.environment)
        if action == "rerun":
            return run is not None and run.finished_at is not None and fleet.may(
                "launch", run.environment)
        return super().check_action(action, parameters)

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        key = str(self.run_id)
        if changed is not None and key not in changed:
            return
        known = self.wapp.fleet.runs.get(key)
        if known is None:
            return
        run = known.model_dump()
        if "steps" not in run:
            # A run as lists carry it (a snapshot): its steps are the ones shown already.
            if self.run is None:
                return
            run = {**self.run, **run}
        self.run = run
        self._show_run()

    def _tick(self) -> None:
        if self.shown and self.shown.finished_at is None:
            self._show_run()

    def _show_run(self) -> None:
        run = self.shown
        if run is None:
            return
        self.query_one("#view-title", Static).update(Text(f"Run {run.id}", style="bold"))
        headline = Text()
        headline.append_text(safe(run.runbook, 100))
        headline.append(" on ")
        headline.append(plain(run.environment, 100), style="bold")
        headline.append("   ")
        headline.append_text(run_status_text(run.status))
        headline.append(f"   {duration(run.started_at, run.finished_at)}",
                        style="bright_black")
        headline.append(f"   by {plain(run.actor, 100)}", style="bright_black")
        modes = [m for m, on in (("guided failure", run.guided),
                                 ("step-through", run.step_through)) if on]
        if modes:
            headline.append(f"   ({', '.join(modes)})", style="bright_black")
        if run.reason:
            headline.append("\n")
            headline.append_text(safe(run.reason, 300))
        links = [plain(run.cause, 200)] if run.cause else []
        if run.reruns:
            links.append("run again as " + ", ".join(f"run {r}" for r in run.reruns)
                         + " (:run ID)")
        if links:
            headline.append("\n")
            headline.append(" · ".join(links), style="cyan")
        decisions = run.decisions or []
        if decisions:
            # The latest few, newest last: who decided what, when, and why.
            headline.append("\n")
            headline.append("decided: ", style="bright_black")
            if len(decisions) > SHOWN_DECISIONS:
                headline.append(f"({len(decisions) - SHOWN_DECISIONS} earlier) ",
                                style="bright_black")
            for index, decision in enumerate(decisions[-SHOWN_DECISIONS:]):
                if index:
                    headline.append(" · ", style="bright_black")
                headline.append(decision.action, style="bold")
                where = (" the start" if decision.position == 0 else
                         f" step {decision.position}" if decision.position else "")
                headline.append(f"{where} by {plain(decision.actor, 60)} "
                                f"{ago(decision.at)}", style="bright_black")
                if decision.note:
                    headline.append(": ")
                    headline.append_text(safe(decision.note, 120))
        if run.waiting:
            # Only the answers this person may give; who else must, when not them.
            keys = "  ".join(f"[{DECISION_KEYS[a]}] {a}" for a in run.waiting.actions
                             if self.check_action("decide", (a,)))
            headline.append("\n")
            headline.append(f"⏸ {keys or 'waiting'}", style="bold yellow")
            if run.waiting.another_person:
                headline.append(f"   another person than {plain(run.person, 40)} must "
                                "approve (four eyes)", style="yellow")
        self.query_one("#run-headline", Static).update(headline)
        now = datetime.now(UTC)
        self.steps.sync({
            f"{s.position}:{s.worker}": [
                Text(str(s.position)), safe(s.name, 100), safe(s.worker or "-", 60),
                run_status_text(s.status), Text(str(s.attempt)),
                Text(duration(s.started_at, s.finished_at, now)),
                # What went wrong, else why it runs where it does.
                safe(s.reason or s.worker_reason, 300)]
            for s in run.steps})
        # Only when the keys on offer change: the footer rebuilds itself on every call.
        offered = (tuple(run.waiting.actions if run.waiting else ()), run.finished_at is None)
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

    def action_rerun(self) -> None:
        if self.shown is not None:
            offer_rerun(self, self.shown)

    def _show_log_status(self) -> None:
        view = self.log_view
        ended = self._ended
        parts = [("following" if view.following else "paused", "green" if view.following
                  else "yellow")]
        if view.pending:
            parts.append((f"  +{view.pending:,} lines (f to follow)", "bold yellow"))
        parts.append((f"  timestamps {'on' if view.timestamps else 'off'}", "bright_black"))
        parts.append((f"  wrap {'on' if view.wrap else 'off'}", "bright_black"))
        if view.only_step is not None:
            parts.append((f"  step {view.only_step} only (enter: all steps)", "cyan"))
        if view.entries and (view.first_seq > 1 or view.newest > view.last_seq):
            # Only part of the log is in the view: say which part.
            parts.append((f"  lines {view.first_seq:,} to {view.last_seq:,} of "
                          f"{view.newest:,}", "cyan"))
        if ended:
            parts.append((f"  log complete: run {ended['status']}", "bright_black"))
        self.query_one("#log-status", Static).update(Text.assemble(*parts))

    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.has_focus:
            search.add_class("hidden")
            self.log_view.focus()
            return
        self.app.pop_screen()

    def on_live_table_row_selected(self, _event: LiveTable.RowSelected) -> None:
        self.action_only_step()

    def action_only_step(self) -> None:
        if self.focused is not self.steps:
            return
        key = self.steps.selected_key
        position = int(key.split(":")[0]) if key else None
        view = self.log_view
        view.only_step = None if view.only_step == position else position
        view.rerender()
        self._show_log_status()

    def action_cancel_run(self) -> None:
        confirm_cancel(self, self.run_id)

    def action_decide(self, action: str) -> None:
        if action == "approve":
            # Never one stray key: an approval is confirmed, with a note if one is due.
            from console.screens.modals import NoteDialog

            run = self.shown
            waiting = run.waiting if run else None
            where = f" on {run.environment}" if run else ""

            def approved(note: str | None) -> None:
                if note is not None:
                    self._send_decision("approve", note)

            what = ("the start" if waiting and waiting.position == 0 else
                    f"step {waiting.position if waiting else '?'}")
            self.app.push_screen(NoteDialog(
                f"Approve {what} of run {self.run_id}{where}?",
                "A note for the record (optional); enter approves"), approved)
            return
        if action == "abort":
            from console.screens.modals import NoteDialog

            def with_note(note: str | None) -> None:
                if note is not None:
                    self._send_decision(action, note)

            self.app.push_screen(NoteDialog(f"Abort run {self.run_id}?",
                                            "Why? (kept with the decision)"), with_note)
            return
        self._send_decision(action, "")

    def _send_decision(self, action: str, note: str) -> None:
        self.wapp.call_api(f"{action.title()}", "POST", f"/api/runs/{self.run_id}/decide",
                           {"action": action, "note": note}, done=f"{action.title()} recorded.")


def _step_order(key: str, _cells: Any) -> tuple[int, str]:
    position, _, worker = key.partition(":")
    return int(position), worker


def offer_rerun(screen: FleetScreen, run: Run) -> None:
    """Ask to run a finished run again (from its first failed step when it has one, else
    whole), taking its sensitive values again; then open the new run."""
    from console.screens.modals import RerunDialog

    if run.finished_at is None:
        return
    gone_wrong = sorted(s.position for s in run.steps
                        if s.status in ("failed", "interrupted", "cancelled"))
    start = gone_wrong[0] if gone_wrong else 1
    names = {s.position: s.name for s in run.steps}
    title = f"Rerun run {run.id}" + (f" from step {start} ({names.get(start, '')})"
                                     if start > 1 else "")
    body = (f"{run.runbook} on {run.environment}, as this run had it, with its values"
            + (f"; steps 1 to {start - 1} are not run again" if start > 2 else
               "; step 1 is not run again" if start == 2 else "") + ".")
    if run.sensitive:
        body += " Its sensitive values are not kept for a rerun: give them again."

    async def rerun(values: dict[str, str]) -> None:
        try:
            again = await screen.wapp.api.post(f"/api/runs/{run.id}/rerun", {
                "from_step": start, "variables": values})
        except ApiError as exc:
            screen.notify(plain(exc, 300), title="Rerun", severity="error", markup=False)
            return
        screen.notify(plain(f"run {again['id']}: {again['cause']}", 300), markup=False)
        screen.app.push_screen(RunScreen(again["id"]))

    def answered(values: dict[str, str] | None) -> None:
        if values is not None:
            screen.run_worker(rerun(values), group="rerun", exit_on_error=False)

    screen.app.push_screen(RerunDialog(title, body, list(run.sensitive)), answered)
