"""The Run view: a run's steps with their state, worker and duration, and its live log."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from console import typed
from console.client import ApiError
from console.display import ago, duration
from console.screens.base import FleetScreen
from console.screens.runs import confirm_cancel
from console.state import plain, run_status_text, safe
from console.widgets.live_table import LiveTable
from console.widgets.log_view import MAX_LINES, LogView
from wire.logcodec import expand, stamp_before

if TYPE_CHECKING:
    from wire.runs import FoundLine, Run

TAIL = 5000  # lines shown when a long log opens; the rest is a scroll or a search away
BACK_PAGE = 5000  # earlier lines brought in when the reader reaches the window's top
STATUS_EVERY_S = 0.25
AROUND = 5000  # lines loaded around a match or an error outside the window
SLICE = 1000  # lines added to the view between two looks at the keyboard
PAGE = 5000  # lines per event asked of the server: small events decode between two keys

SHOWN_DECISIONS = 3  # the latest decisions in the headline; `runs show` lists them all
DECISION_KEYS = {"continue": "c", "skip": "s", "retry": "r", "approve": "a", "abort": "A"}


class RunScreen(FleetScreen):
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
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        # The run as the server last said, its push events merged in; read as `shown`.
        self.run: dict[str, Any] | None = None
        self._match_seq: int | None = None
        self._ended: dict[str, Any] | None = None  # how the log stream ended, once it has
        self._status_at = 0.0  # when the status line last said the line counts
        self._offered: tuple[tuple[str, ...], bool] | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="run-body"):
            yield Static(id="run-headline")
            steps = LiveTable(id="steps-table", sort_key=_step_order, fill="reason")
            steps.set_columns([("position", "#", 3), ("name", "Step", 28),
                               ("worker", "Worker", 24), ("status", "Status", 13),
                               ("attempt", "Try", 3), ("duration", "Duration", 9),
                               ("reason", "Why", None)])
            yield steps
            yield Static(id="log-status")
            yield LogView(id="run-log")
            yield Input(placeholder="search the log (enter: find, n/N: next/previous)",
                        id="log-search", classes="hidden", compact=True)
        yield from self.compose_bottom()

    @property
    def log_view(self) -> LogView:
        return self.query_one("#run-log", LogView)

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
        if action == "decide":
            waiting = self.shown.waiting if self.shown else None
            return waiting is not None and parameters[0] in waiting.actions
        if action == "cancel_run":
            return self.shown is not None and self.shown.finished_at is None
        return super().check_action(action, parameters)

    # -------------------------------------------------------- data

    @work(exclusive=True, group="run-log", exit_on_error=False)
    async def follow_log(self) -> None:
        api = self.wapp.api
        try:
            self.run = await api.get(f"/api/runs/{self.run_id}")
            self._show_run()
            params = {"follow": "true", "tail": str(TAIL), "page": str(PAGE),
                      "keep": str(MAX_LINES)}
            async for event, data in api.stream_events(f"/api/runs/{self.run_id}/log",
                                                       params):
                if event == "chunks":
                    await self._add_chunks(data)
                elif event == "skipped":
                    self._add_gap(data)
                elif event == "end":
                    self._ended = data
                    self._show_log_status()
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)

    async def _add_chunks(self, chunks: list[dict[str, Any]]) -> None:
        """Take a batch in slices, letting keys through in between; of a flood larger than
        the view keeps, only the part it would keep is unpacked."""
        view = self.log_view
        if not view.attached:  # the reader is elsewhere in the log: only counted
            view.newest = max(view.newest, chunks[-1]["last_seq"])
            view.pending += sum(c["last_seq"] - c["first_seq"] + 1 for c in chunks)
            view.refresh()
            return
        budget = MAX_LINES
        for chunk in reversed(chunks):
            chunk["keep"] = min(budget, chunk["last_seq"] - chunk["first_seq"] + 1)
            budget -= chunk["keep"]
        for chunk in chunks:
            if chunk["keep"] <= 0:
                continue
            parts = (await asyncio.to_thread(chunk["lines"].split, "\n")
                     if len(chunk["lines"]) > 64 * 1024 else chunk["lines"].split("\n"))
            start = len(parts) - chunk["keep"]
            at = stamp_before(parts, start)
            for offset in range(start, len(parts), SLICE):
                lines = expand(chunk, parts[offset:offset + SLICE], offset, at)
                at = lines[-1]["at"]
                self.log_view.add_lines(lines)
                await asyncio.sleep(0)
        # The line counts change with every batch of a flood: said a few times a second.
        if time.monotonic() - self._status_at > STATUS_EVERY_S:
            self._status_at = time.monotonic()
            self._show_log_status()

    def _add_gap(self, skipped: dict[str, int]) -> None:
        # The server moved this follower on past lines the window could not hold: they
        # are the window's earlier lines now, a scroll up or Home away.
        view = self.log_view
        view.newest = max(view.newest, skipped["to"])
        view.replace([], attached=True)

    async def _window(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Lines after line `after`, `limit` at most, from the server."""
        lines: list[dict[str, Any]] = []
        async for event, data in self.wapp.api.stream_events(
                f"/api/runs/{self.run_id}/log",
                {"after": str(after), "limit": str(limit), "page": str(PAGE)}):
            if event == "chunks":
                for chunk in data:
                    lines += await asyncio.to_thread(expand, chunk)
        return lines

    def on_log_view_need_older(self, _message: LogView.NeedOlder) -> None:
        self.load_older()

    def on_log_view_need_live_end(self, _message: LogView.NeedLiveEnd) -> None:
        self.action_live_end()

    def on_log_view_need_first_page(self, _message: LogView.NeedFirstPage) -> None:
        self.load_around(1, top=True)

    @work(exclusive=True, group="run-log-older", exit_on_error=False)
    async def load_older(self) -> None:
        view = self.log_view
        first = view.first_seq
        if first <= 1 or view.loading:
            return
        view.loading = True
        try:
            after = max(0, first - 1 - BACK_PAGE)
            view.prepend(await self._window(after, first - 1 - after))
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)
        finally:
            view.loading = False
        self._show_log_status()

    @work(exclusive=True, group="run-log-page", exit_on_error=False)
    async def load_around(self, seq: int, top: bool = False) -> None:
        """Show line `seq`, loading a window around it when it is not in the one shown."""
        view = self.log_view
        # Loading until the line is shown: reaching the new window's top on the way
        # there is not the reader asking for earlier lines.
        view.loading = True
        try:
            if not view.holds(seq):
                after = 0 if top else max(0, seq - 1 - AROUND // 2)
                lines = await self._window(after, AROUND)
                view.following = False
                view.replace(lines, attached=bool(lines) and lines[-1]["seq"] >= view.newest
                             and self.shown is not None and self.shown.finished_at is not None)
            view.following = False
            if top:
                view.show_top()
            else:
                view.jump_to(seq)
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)
        finally:
            self.call_after_refresh(setattr, view, "loading", False)
        self._show_log_status()

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

    @property
    def shown(self) -> Run | None:
        """The run, read as its model."""
        return typed.view(self.run) if self.run is not None else None

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
                where = f" step {decision.position}" if decision.position else ""
                headline.append(f"{where} by {plain(decision.actor, 60)} "
                                f"{ago(decision.at)}", style="bright_black")
                if decision.note:
                    headline.append(": ")
                    headline.append_text(safe(decision.note, 120))
        if run.waiting:
            keys = "  ".join(f"[{DECISION_KEYS[a]}] {a}" for a in run.waiting.actions)
            headline.append("\n")
            headline.append(f"⏸ {keys}", style="bold yellow")
        self.query_one("#run-headline", Static).update(headline)
        now = datetime.now(UTC)
        self.steps.sync({
            f"{s.position}:{s.worker}": [
                Text(str(s.position)), safe(s.name, 100), safe(s.worker or "-", 60),
                run_status_text(s.status), Text(str(s.attempt)),
                Text(duration(s.started_at, s.finished_at, now)),
                safe(s.reason, 300)]
            for s in run.steps})
        # Only when the keys on offer change: the footer rebuilds itself on every call.
        offered = (tuple(run.waiting.actions if run.waiting else ()), run.finished_at is None)
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

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

    def action_follow(self) -> None:
        view = self.log_view
        if view.following and not view.pending:
            view.following = False
        else:
            self.action_live_end()

    def action_live_end(self) -> None:
        """The end of the log, following it; from elsewhere in a long log, the live end
        is loaded again."""
        view = self.log_view
        if view.attached:
            view.following = True
            return
        view.following = True
        view.replace([], attached=True)
        self.follow_log()

    def action_timestamps(self) -> None:
        self.log_view.timestamps = not self.log_view.timestamps
        self.log_view.rerender()
        self._show_log_status()

    def action_wrap(self) -> None:
        self.log_view.wrap = not self.log_view.wrap
        self.log_view.rerender()
        self._show_log_status()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.remove_class("hidden")
        self.set_focus(search)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search":
            self._match_seq = None
            self.action_next_match()
            self.log_view.focus()

    def _find(self, backwards: bool) -> None:
        needle = self.query_one("#log-search", Input).value
        if needle:
            self.find_in_log(needle, backwards)

    @work(exclusive=True, group="run-log-find", exit_on_error=False)
    async def find_in_log(self, needle: str, backwards: bool = False,
                          errors: bool = False) -> None:
        """Ask the server, which has the whole log: from the last match (or the top of
        what is shown) on, or back; the first error of all with `errors`."""
        view = self.log_view
        params: dict[str, str] = {"errors": "true"} if errors else {"text": needle}
        if view.only_step is not None:
            params["step"] = str(view.only_step)
        if not errors:
            here = self._match_seq if self._match_seq is not None else \
                (view.top_seq() or view.first_seq)
            if backwards:
                params["before"] = str(here)
            else:
                params["after"] = str(here if self._match_seq is not None else here - 1)
        try:
            answer: FoundLine = typed.view(await self.wapp.api.get(
                f"/api/runs/{self.run_id}/log/find", params=params))
            found = answer.line
            went_from_start = params.get("after") == "0"
            if found is None and not errors and not went_from_start:
                # Nothing further that way: go round from the other end, as `less` does.
                params.pop("after", None)
                if params.pop("before", None) is not None:
                    params["before"] = str(view.newest + 1)
                answer = typed.view(await self.wapp.api.get(
                    f"/api/runs/{self.run_id}/log/find", params=params))
                found = answer.line
                if found is not None:
                    self.notify("The search went round from the " +
                                ("end." if backwards else "top."))
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        if found is None:
            self.notify(plain("No error line in the log." if errors else
                              f"No {'earlier' if backwards else 'later'} line has "
                              f"{needle!r}."), markup=False)
            return
        self._match_seq = found.seq
        view.marked = found.seq
        self.load_around(found.seq)
        if errors:
            self.notify(plain(f"Line {found.seq:,}, step {found.step}: {found.text}", 160),
                        markup=False)

    def action_next_match(self) -> None:
        self._find(backwards=False)

    def action_previous_match(self) -> None:
        self._find(backwards=True)

    def action_first_error(self) -> None:
        self.find_in_log("", errors=True)

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

            self.app.push_screen(NoteDialog(
                f"Approve step {waiting.position if waiting else '?'} of run {self.run_id}"
                f"{where}?",
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
