"""What every fleet view shares: the top bar, the footer, a `/` filter, live updates."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from console.state import STATUS_ORDER, plain, status_text
from console.views import NARROW_BELOW

if TYPE_CHECKING:
    from console.app import WorkdeckApp
    from wire.people import Whoami


# What each view's verb needs (wire/roles.py): a key the server would refuse is not
# offered, in the footer, the `?` help or the palette. The server decides anyway.
ACTION_NEEDS = {
    "check": "check", "check_all": "check", "toggle_drain": "drain",
    "trust": "admin", "toggle_enabled": "admin", "new_pool": "admin",
    "launch": "launch", "edit": "admin", "new": "admin", "remove": "admin",
    "cancel_run": "cancel", "grant": "admin", "revoke": "admin", "remove_person": "admin",
    "approve": "approve", "refuse": "approve", "toggle_node_drain": "admin",
    "toggle_pause": "launch", "remove_schedule": "launch", "rerun": "launch",
}


class TopBar(Horizontal):
    """The view's name, the fleet's counts and the connection to the server."""

    def compose(self) -> ComposeResult:
        yield Static(id="view-title")
        yield Static(id="fleet-counts")
        yield Static(id="connection")


class FleetScreen(Screen):
    """A view of the fleet that the app tells about every change."""

    VIEW_NAME: ClassVar[str] = ""
    FILTERABLE: ClassVar[bool] = True

    BINDINGS = [
        # A priority binding runs as the key arrives, before the keys typed after it are
        # routed: so "/web" typed in one burst lands "web" in the filter, not on the table.
        Binding("slash", "filter", "Filter", id="filter", priority=True),
        Binding("escape", "back", "Back", show=False, id="back"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides the binding: the filter of views that have none, a verb the person
        # may not use.
        if action == "filter" and not self.FILTERABLE:
            return False
        need = ACTION_NEEDS.get(action)
        return need is None or self.wapp.fleet.may(need)

    @property
    def wapp(self) -> WorkdeckApp:
        return self.app  # type: ignore[return-value]

    def compose_top(self) -> ComposeResult:
        yield TopBar()

    def compose_bottom(self) -> ComposeResult:
        if self.FILTERABLE:
            # Always laid out (one line), so that keys typed right after `/` land in it.
            yield Input(placeholder="/ to filter: words to match, esc clears", id="filter",
                        compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#view-title", Static).update(Text(self.VIEW_NAME, style="bold"))
        self.connection_changed()
        if self.wapp.fleet_loaded:
            self.fleet_changed(None)

    def on_screen_resume(self) -> None:
        # Views not on screen still track changes; a full pass catches anything missed.
        if self.wapp.fleet_loaded:
            self.fleet_changed(None)

    def fleet_changed(self, changed: set[str] | None) -> None:
        self._update_counts()
        # The server's own condition (a full disk, say), and the runs waiting for this
        # person's approval: the bar is redrawn only when what it says changed.
        self.connection_changed()

    @property
    def narrow(self) -> bool:
        """Under 100 columns (the app's "-narrow" breakpoint): the top bar says less."""
        return self.app.size.width < NARROW_BELOW

    def on_resize(self) -> None:
        self._update_counts()
        self.connection_changed()

    def _update_counts(self) -> None:
        counts = self.wapp.fleet.counts()
        narrow = self.narrow
        text = Text()
        for status in STATUS_ORDER:
            if counts.get(status):
                if narrow:  # the symbols alone: the Dashboard's tiles and `?` name them
                    text.append_text(status_text(status)[:1])
                    text.append(f" {counts[status]}  ")
                else:
                    text.append_text(status_text(status))
                    text.append(f" {counts[status]}   ")
        self.query_one("#fleet-counts", Static).update(text)

    def connection_changed(self) -> None:
        app = self.wapp
        fault = app.fleet.server.store_fault if app.connected and app.fleet.server else None
        if fault:
            said = Text(f"⚠ server: {plain(fault, 120)}; runs keep their output in memory "
                        "until it is fixed", style="bold")
        elif app.connected:
            # Narrow, the server's address goes first: who you are and may be stays.
            said = identity(app, with_host=not self.narrow)
        else:
            said = Text(f"⚠ {plain(app.connection_note, 300)}", style="bold")
        if said == getattr(self, "_connection_said", None):
            return
        self._connection_said = said
        bar = self.query_one("#connection", Static)
        bar.update(said)
        bar.set_class(bool(fault) or not app.connected, "lost")

    # ------------------------------------------------------------ filter

    @property
    def filter_text(self) -> str:
        if not self.FILTERABLE:
            return ""
        return self.query_one("#filter", Input).value.strip()

    def action_filter(self) -> None:
        if not self.FILTERABLE:
            return
        # set_focus is immediate; focus() would let keys already queued go to the table.
        self.set_focus(self.query_one("#filter", Input))

    def set_filter(self, text: str) -> None:
        if not self.FILTERABLE:
            return
        self.query_one("#filter", Input).value = text
        self.filter_changed()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_changed()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.focus_main()

    def filter_changed(self) -> None:
        self.fleet_changed(None)

    def focus_main(self) -> None:
        """Put the keyboard focus back on the view's main table."""

    def action_back(self) -> None:
        if self.FILTERABLE:
            box = self.query_one("#filter", Input)
            if box.has_focus or box.value:
                box.value = ""
                self.filter_changed()
                self.focus_main()
                return
        if self.app.current_mode != "dashboard":
            self.app.switch_mode("dashboard")


def identity(app: WorkdeckApp, with_host: bool = True) -> Text:
    """`⏸ 2 to approve  ● alice@ops (operator)`: the runs waiting for their approval
    first (what they can act on), then who and where they are (where left out when
    `with_host` is False)."""
    fleet = app.fleet
    you, server = fleet.you, fleet.server
    text = Text()
    waiting = len(fleet.awaiting_approval()) if you is not None else 0
    if waiting:
        text.append(f"⏸ {waiting} to approve  ", style="bold yellow")
    text.append("● ", style="green")
    if you is None:  # an older server: where it is, then
        text.append(app.target.describe() if with_host else "connected", style="green")
        return text
    if not with_host:
        text.append(plain(you.name, 40), style="green")
        text.append_text(roles_text(you))
        return text
    host = (server.host if server else "") or app.target.describe()
    node = server.node if server else ""
    if node and node != host.split(".")[0]:
        host = f"{host}/{node}"  # which of the server nodes sharing a database
    text.append(f"{plain(you.name, 40)}@{plain(host, 60)}", style="green")
    text.append_text(roles_text(you))
    return text


def roles_text(you: Whoami) -> Text:
    roles = sorted({g.role for g in you.grants}) or ["no role"]
    return Text(f" ({', '.join(roles)})", style="bright_black")

