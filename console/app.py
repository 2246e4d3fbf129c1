"""The Workdeck console: a Textual app that shows the fleet live and acts on it by key."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from console import views
from console.client import ApiError, AsyncClient, ServerUnavailable, Target, start_server
from console.state import Fleet, plain
from console.typed import view

if TYPE_CHECKING:  # textual's Worker is the other one here
    from wire import workers as wire_workers

RECONNECT_MAX_S = 5.0
CHANGES_HZ = 10  # view updates a second, at most, however busy the fleet


class WorkdeckApp(App[None]):
    """Views are modes; the fleet arrives as a push stream and each view updates in place."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Workdeck"
    # A screen narrower than 100 columns (80 by 24: a phone's SSH client, a small split) is
    # "-narrow": what would be cut gives way first (app.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (views.NARROW_BELOW, "-wide")]
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        # ctrl+c quits, as in every terminal tool (Textual's own says "press ctrl+q").
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="quit_ctrl_c"),
        # Priority, as the filter's `/` is: the keys typed in one burst after it
        # (`:approvals`, `lwarm`) are the prompt's, not the view's (`a` opens the Advisor);
        # check_action lets them through to a text field that has the focus.
        Binding("colon", "command_line", ":cmd", id="command_line", priority=True),
        Binding("l", "launch_finder", "Launch…", id="launch_finder", priority=True),
        Binding("question_mark", "help", "Help", id="help"),
        *views.bindings(),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # In the Run and Approvals views `a` approves: it must never also mean "open the
        # Advisor" (a stray approval, or a view switched away when nothing waits).
        if action in ("command_line", "launch_finder"):
            from textual.widgets import Input, TextArea

            if isinstance(self.focused, Input | TextArea) or getattr(
                    self.focused, "typing", False):
                return False  # typed into the field, or a name typed in a table (`'local`)
        if action == "launch_finder":
            return self.fleet.may("launch")  # not offered to who may launch nowhere
        approving = getattr(self.screen, "VIEW_NAME", "") in ("Run", "Approvals")
        return not (approving and action == "view" and parameters == ("advisor",))

    connected: reactive[bool] = reactive(False)
    connection_note: reactive[str] = reactive("connecting…")

    def __init__(self, target: Target, *, autostart_args: list[str] | None = None) -> None:
        # Set here, not on the class, so that importing the app loads no screen yet.
        self.MODES = views.modes()  # type: ignore[misc]
        super().__init__()
        self.target = target
        self.autostart_args = autostart_args
        self.api = AsyncClient(target)
        self.fleet = Fleet()
        self.fleet_loaded = False
        # Where this console last launched: the launch finder's dialog starts there.
        self.last_environment: str | None = None
        self._pending_changes: set[str] = set()
        self._changes_due: Timer | None = None

    # ------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        self.switch_mode(views.FIRST)
        self.follow_events()
        self._watch_web_parent()
        # A closed terminal (SIGHUP) or a polite kill ends the console the normal way, so
        # whoever started it (the demo, say) gets to clean up behind it.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self.exit)

    def _watch_web_parent(self) -> None:
        """A browser's console (console/web.py) ends with the server that runs it, however
        that ends: the kernel signals it when its parent dies (SIGTERM, which Textual's
        web driver takes as quit), and a look every second catches what that misses. Left
        behind, it would spin on a closed pipe."""
        parent = os.environ.get("WORKDECK_WEB_PARENT", "")
        if not parent.isdigit():
            return
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

        def look() -> None:
            if os.getppid() != int(parent):
                self.exit()

        look()  # gone before the kernel was asked
        self.set_interval(1.0, look)

    async def on_unmount(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        await self.api.aclose()

    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_events(self) -> None:
        """Keep a push stream open, reconnecting (and restarting a local server) when lost."""
        delay = 0.5
        failures = 0
        while True:
            try:
                async for event, data in self.api.events():
                    if event == "snapshot":
                        you = self.fleet.you
                        self.fleet.load(data)
                        if not self.fleet_loaded:
                            self.call_after_refresh(_freeze_startup_objects)
                        self.fleet_loaded = True
                        self.connected = True
                        self.connection_note = ""
                        delay, failures = 0.5, 0
                        self.broadcast(None)
                        if self.fleet.you != you:
                            self._you_changed()
                    elif event == "changes":
                        people = self.fleet.people_version
                        self._changed_later(self.fleet.apply(data))
                        if self.fleet.people_version != people:
                            self.ask_who_i_am()
                raise ServerUnavailable("the server closed the event stream")
            except ApiError as exc:
                self.connected = False
                failures += 1
                if isinstance(exc, ServerUnavailable) and await self.api.fail_over():
                    # Another node of those sharing the database: at once; its snapshot
                    # brings everything back, whichever node did what meanwhile.
                    self.connection_note = ("server connection lost: trying "
                                            f"{self.target.server_url}")
                    continue
                self.connection_note = f"server connection lost, retrying in {delay:g}s: {exc}"
                if failures == 3 and self.target.local:
                    self.connection_note = "server connection lost; starting a new server…"
                    try:
                        await asyncio.to_thread(start_server, self.target,
                                                extra_args=self.autostart_args)
                    except ApiError as start_error:
                        self.connection_note = f"cannot restart the server: {start_error}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    @work(exclusive=True, group="you", exit_on_error=False)
    async def ask_who_i_am(self) -> None:
        """People or grants changed: who this console is for, and what they may do now."""
        with contextlib.suppress(ApiError):
            self.fleet.you = view(await self.api.get("/api/whoami"))
            self._you_changed()

    def _you_changed(self) -> None:
        # The keys on offer follow what the person may do; the top bar says who they are.
        for screen in self._fleet_screens():
            screen.refresh_bindings()
            screen.connection_changed()

    def broadcast(self, changed: set[str] | None) -> None:
        """Tell the view on screen what changed (None: everything).

        Views out of sight are left alone: each takes a full pass when it is shown again
        (FleetScreen.on_screen_resume), so a busy fleet costs only the view in front.
        """
        self._pending_changes, self._changes_due = set(), None
        for screen in reversed(self.screen_stack):
            if hasattr(screen, "fleet_changed") and screen.is_mounted:
                screen.fleet_changed(changed)
            if not isinstance(screen, ModalScreen):
                break  # a modal dialog leaves the view beneath it in sight

    def _changed_later(self, changed: set[str]) -> None:
        # Changes are gathered and shown at most CHANGES_HZ times a second: a fleet that
        # changes all the time then costs a few view updates a second, not one per change.
        self._pending_changes |= changed
        if self._changes_due is None:
            self._changes_due = self.set_timer(1 / CHANGES_HZ, self._show_changes)

    @property
    def changes_pending(self) -> bool:
        """Changes have arrived that the view on screen shows shortly."""
        return self._changes_due is not None

    def _show_changes(self) -> None:
        self.broadcast(self._pending_changes)

    def _fleet_screens(self) -> Iterable[Any]:
        for stack in self._screen_stacks.values():
            for screen in stack:
                if hasattr(screen, "fleet_changed") and screen.is_mounted:
                    yield screen

    def watch_connected(self, _connected: bool) -> None:
        for screen in self._fleet_screens():
            screen.connection_changed()

    def watch_connection_note(self, _note: str) -> None:
        self.watch_connected(self.connected)

    # ------------------------------------------------------------ actions

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place turns a failed background call into a message, never a traceback.
        if event.state == WorkerState.ERROR and event.worker.group != "events":
            error = event.worker.error
            message = str(error) if isinstance(error, ApiError) else \
                f"Unexpected error: {error.__class__.__name__}: {error}"
            self.notify(plain(message, 500), severity="error", markup=False, timeout=8)

    def call_api(self, description: str, method: str, path: str, body: Any = None,
                 *, done: str | None = None) -> None:
        """Call the API in the background; report the outcome as a notification."""
        self._call_api(description, method, path, body, done)

    @work(exit_on_error=False, group="api")
    async def _call_api(self, description: str, method: str, path: str, body: Any,
                        done: str | None) -> Any:
        try:
            result = await self.api.request(method, path, json=body)
        except ApiError as exc:
            self.notify(plain(exc, 500), title=plain(description), severity="error",
                        markup=False, timeout=8)
            return None
        if done:
            self.notify(plain(done, 300), markup=False)
        return result

    async def action_quit(self) -> None:
        """Quit; first ask when a runbook editor holds changes that are not saved."""
        from console.screens.editor import open_editors
        from console.screens.modals import ConfirmDialog

        unsaved = [editor for editor in open_editors() if editor.unsaved]
        if not unsaved or isinstance(self.screen, ConfirmDialog):
            self.exit()
            return

        def answered(leave: bool | None) -> None:
            if leave:
                self.exit()

        self.push_screen(ConfirmDialog(
            "Quit and lose your changes?", "A runbook in the editor has changes that are "
            "not saved (ctrl+s there saves them).", confirm="Quit"), answered)

    async def action_view(self, mode: str) -> None:
        """Go to a view's list: the views opened on top of it (a run, a worker) close, so
        that `b` always shows the runbooks, even from a run launched there."""
        from console.screens.base import FleetScreen

        await self.switch_mode(mode)
        while len(self.screen_stack) > 1 and isinstance(self.screen, FleetScreen):
            await self.pop_screen()

    def action_launch_finder(self, query: str = "") -> None:
        """Find a runbook by typing part of its name, then launch it (console/screens/
        finder.py): six keys to X on Production with its defaults."""
        from console.screens.finder import RunbookFinder
        from console.screens.launch import LaunchDialog

        def picked(name: str | None) -> None:
            if name:
                self.push_screen(LaunchDialog(name, quick=True))

        self.push_screen(RunbookFinder(sorted(self.fleet.runbooks), query), picked)

    def action_command_line(self) -> None:
        from console.screens.modals import CommandLine

        self.push_screen(CommandLine(), self._run_command)

    async def _run_command(self, line: str | None) -> None:
        if not line:
            return
        word, _, rest = line.strip().lstrip(":").partition(" ")
        word = word.lower()
        opens = views.by_word()
        if word in opens:
            await self.action_view(opens[word])
            screen = self.screen
            if hasattr(screen, "set_filter"):
                screen.set_filter(rest.strip())
        elif word in ("q", "quit", "exit"):
            self.exit()
        elif word in ("help", "h", "?"):
            self.action_help()
        elif word == "check":
            self.check_workers(rest.split() or None)
        elif word == "run" and rest.strip().isdigit():
            from console.screens.run import RunScreen

            self.push_screen(RunScreen(int(rest.strip())))
        elif word == "run":
            self.action_launch_finder(rest.strip())
        else:
            self.notify(f"Unknown command {plain(word, 40)!r}: try {views.command_help()}, "
                        ":run ID, :check [worker...], :quit.", severity="warning",
                        markup=False)

    def check_workers(self, names: list[str] | None) -> None:
        label = ", ".join(names) if names else "every worker"
        self.notify(plain(f"Checking {label}…", 300), markup=False)
        self._check(names)

    @work(exit_on_error=False, group="api")
    async def _check(self, names: list[str] | None) -> None:
        try:
            checked: list[wire_workers.Worker] = view(await self.api.request(
                "POST", "/api/checks", json={"workers": names or []}))
        except ApiError as exc:
            self.notify(plain(exc, 500), title="Check", severity="error", markup=False,
                        timeout=8)
            return
        self.notify(plain(check_summary(checked), 500), markup=False,
                    severity="information" if all(w.status == "healthy" for w in checked)
                    else "warning", timeout=8)

    def action_help(self) -> None:
        from console.screens.modals import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for shown in views.VIEWS:
            yield SystemCommand(shown.title, shown.about,
                                lambda mode=shown.mode: self.run_action(f"view({mode!r})"))
        # The view's own verbs, as its keys run them (on its selected row): declared once,
        # in the bindings, for the keys, the footer, the help and here.
        title = getattr(screen, "VIEW_NAME", "")
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if active.node is not screen or not binding.description or not active.enabled \
                    or binding.action in seen or binding.action in ("back", "filter"):
                continue
            seen.add(binding.action)
            yield SystemCommand(
                f"{title}: {binding.description}" if title else binding.description,
                f"key {self.get_key_display(Binding(key, ''))}",
                lambda action=binding.action, on=screen: self.call_later(on.run_action,
                                                                         action))
        if self.fleet.may("check"):
            yield SystemCommand("Check every worker now", "Run a health check on the whole "
                                "fleet", lambda: self.check_workers(None))
        yield SystemCommand("Help", "Keys of this view", self.action_help)
        yield SystemCommand("Quit", "Close the console (the server keeps running)", self.exit)


def run_console(target: Target, *, autostart_args: list[str] | None = None) -> None:
    WorkdeckApp(target, autostart_args=autostart_args).run()


def _freeze_startup_objects() -> None:
    # What the console built to start (Textual's widgets, styles, caches; the fleet) lives
    # as long as it does. Kept out of the collector's full passes, which otherwise walk
    # all of it again and again during a flood of log lines and stall keys for 100 ms+.
    # No collection first: with ten thousand workers it stalled the first frame 100 ms,
    # and what garbage startup left is small and made once.
    gc.freeze()


def check_summary(checked: list[wire_workers.Worker]) -> str:
    """What a check found, in a sentence: counts by status, and the first one not healthy."""
    from collections import Counter

    from console.display import plural

    if not checked:
        return "Nothing was checked: no such enabled worker."
    if len(checked) == 1:
        worker = checked[0]
        return f"{worker.name}: {worker.status}" + (
            f" ({worker.reason})" if worker.reason else "")
    counts = Counter(w.status for w in checked)
    text = f"Checked {plural(len(checked), 'worker')}: " + ", ".join(
        f"{count} {status}" for status, count in counts.most_common())
    sick = next((w for w in checked if w.status != "healthy"), None)
    if sick is not None:
        text += f"; {sick.name}: {sick.status}" + (
            f" ({sick.reason})" if sick.reason else "")
    return text
