"""Reading a run's log in the Run view: following its live end, paging back through a
long log in windows, finding a line or the first error with the server's help (it has
the whole log; the view holds a window of it)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from textual import work
from textual.widgets import Input

from console import typed
from console.client import ApiError, ServerUnavailable
from console.screens.base import FleetScreen
from console.state import plain
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


class RunLogReader(FleetScreen):
    """The log half of the Run view (console/screens/run.py is the rest)."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        # The run as the server last said, its push events merged in; read as `shown`.
        self.run: dict[str, Any] | None = None
        self._match_seq: int | None = None
        self._ended: dict[str, Any] | None = None  # how the log stream ended, once it has
        self._status_at = 0.0  # when the status line last said the line counts

    @property
    def log_view(self) -> LogView:
        return self.query_one("#run-log", LogView)

    @property
    def shown(self) -> Run | None:
        """The run, read as its model."""
        return typed.view(self.run) if self.run is not None else None

    def _show_run(self) -> None:
        """Show the run as `run` says (the Run view draws its steps and headline)."""

    def _show_log_status(self) -> None:
        """Say where in the log the view is (the Run view's status line)."""

    # -------------------------------------------------------- data

    @work(exclusive=True, group="run-log", exit_on_error=False)
    async def follow_log(self) -> None:
        api = self.wapp.api
        seen: int | None = None  # the last line shown: a stream that broke off goes on
        nodes_left = len(self.wapp.target.addresses) - 1
        self._on = self.wapp.target.server_url  # the node this stream reads from
        while True:
            try:
                self.run = await api.get(f"/api/runs/{self.run_id}")
                self._show_run()
                params = {"follow": "true", "page": str(PAGE), "keep": str(MAX_LINES)}
                params |= {"tail": str(TAIL)} if seen is None else {"after": str(seen)}
                async for event, data in api.stream_events(f"/api/runs/{self.run_id}/log",
                                                           params):
                    if event == "chunks":
                        await self._add_chunks(data)
                        seen = data[-1]["last_seq"]
                    elif event == "skipped":
                        self._add_gap(data)
                        seen = data["to"]
                    elif event == "end":
                        self._ended = data
                        self._show_log_status()
                        return
                    elif event == "refused":
                        self.notify(data["message"], severity="error", markup=False)
                        return
                # The stream stopped without saying how the run ended: its node went
                # away between two events, and another node has the rest.
                raise ServerUnavailable(f"The log stream from {self._on} ended early.")
            except ServerUnavailable as exc:
                # Another node of those sharing the database has the same log: from
                # where it broke off (the app moves to it; a second node is tried too).
                if nodes_left > 0 and (self.wapp.target.server_url != self._on or
                                       await api.fail_over()):
                    nodes_left -= 1
                    self._on = self.wapp.target.server_url
                    continue
                self.notify(str(exc), severity="error", markup=False)
                return
            except ApiError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return

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
            params["position"] = str(view.only_step)
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
            self.notify(plain(f"Line {found.seq:,}, step {found.position}: {found.text}", 160),
                        markup=False)

    def action_next_match(self) -> None:
        self._find(backwards=False)

    def action_previous_match(self) -> None:
        self._find(backwards=True)

    def action_first_error(self) -> None:
        self.find_in_log("", errors=True)
