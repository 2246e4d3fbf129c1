"""Dialogs: the `:` command line, help, confirmations, trusting a host key, a new pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static

from console import views
from console.state import plain, safe

if TYPE_CHECKING:
    from wire.workers import Worker


class CommandLine(ModalScreen[str | None]):
    """k9s-style `:` prompt at the bottom of the screen."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Horizontal(id="command-line"):
            yield Label(":")
            yield Input(placeholder="workers [filter] · pools [filter] · runbooks · runs "
                        "[filter] · advisor · dashboard · run ID · check [worker…] · help · "
                        "quit", id="command-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def on_key(self, event: events.Key) -> None:
        type_into(self.query_one("#command-input", Input), event)


def type_into(box: Input, event: events.Key) -> None:
    """A key that reached a prompt's screen before its input had the focus goes into the
    input: typed in one burst with the key that opened it (`:approvals`), it is the
    prompt's, never a key of the view underneath (`a` would open the Advisor)."""
    if not box.has_focus and event.is_printable and event.character:
        box.insert_text_at_cursor(event.character)
        box.screen.set_focus(box)
        event.stop()
        event.prevent_default()


class HelpScreen(ModalScreen[None]):
    """The keys of the view underneath, and the ones that work everywhere."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss(None)", "Close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for keys, description, enabled in help_rows(self.under):
            table.add_row(keys, Text(description, style="" if enabled else "bright_black"))
        table.add_row("ctrl+p", "Command palette")
        table.add_row("", "")
        others = ", ".join(f":{v.mode}" for v in views.VIEWS if v.mode != "workers")
        table.add_row(":workers web", f"Jump to a view, filtered (also {others})")
        table.add_row(":run ID", "Open a run")
        table.add_row(":check NAME", "Health-check workers now")
        title = getattr(self.under, "VIEW_NAME", "") or "Workdeck"
        with Vertical(id="help-box", classes="dialog"):
            yield Static(Text(f"Keys · {title}", style="bold"))
            with VerticalScroll():
                yield Static(table)
            yield Static(Text("esc to close · dim: not now", style="bright_black"))


def help_rows(screen: Screen) -> list[tuple[str, str, bool]]:
    """(keys, what they do, whether they do it now) for the keys of `screen` as it is:
    the bindings that would really run (one per key, the nearest to the focus, as the
    key itself goes), so the help can never list a key twice or one that is shadowed."""
    by_action: dict[tuple[int, str], tuple[list[str], str, bool]] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description or binding.system:
            continue
        display = screen.app.get_key_display(Binding(key, ""))
        # One row per action of one owner, its keys together ("f, end").
        slot = (id(active.node), binding.action)
        if slot in by_action:
            by_action[slot][0].append(display)
        else:
            by_action[slot] = ([display], binding.description, active.enabled)
    # The view's own keys first, then the ones that work everywhere, then moving around.
    nodes = {id(active.node): active.node for active in screen.active_bindings.values()}

    moving = {"app.focus_next", "app.focus_previous", "screen.copy_text"}

    def rank(slot: tuple[int, str]) -> int:
        node = nodes[slot[0]]
        if slot[1] in moving:
            return 2
        return 0 if node is screen else 1 if node is screen.app else 2

    return [(", ".join(keys), description, enabled)
            for slot, (keys, description, enabled) in sorted(
                by_action.items(), key=lambda item: rank(item[0]))
            if slot[1] != "command_palette"]


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, title: str, body: str, *, confirm: str = "Yes",
                 refuse: str = "Back") -> None:
        super().__init__()
        self.title_text, self.body, self.confirm = title, body, confirm
        self.refuse = refuse  # never "Cancel": the thing confirmed may be a cancel

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(plain(self.title_text), style="bold"))
            yield Static(Text(plain(self.body, 2000)))
            with Horizontal(classes="buttons"):
                yield Button(f"{self.confirm} (y)", id="yes", variant="error")
                yield Button(f"{self.refuse} (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TrustDialog(ModalScreen[bool]):
    """Shows the presented fingerprint before an operator pins it; loud when a key changed."""

    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Trust")]

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def compose(self) -> ComposeResult:
        w = self.worker
        changed = bool(w.host_key)
        body = Text()
        body.append("Worker       ")
        body.append_text(safe(w.name))
        body.append("\nAddress      ")
        body.append_text(safe(f"{w.host}:{w.port}"))
        body.append("\nPresented    ")
        body.append(w.presented_host_key or "-", style="bold")
        if w.host_key:
            body.append("\nPinned now   ")
            body.append(w.host_key, style="bold")
            body.append("\n\nTHE HOST KEY CHANGED. Someone may be intercepting this "
                        "connection (man-in-the-middle), or the worker was rebuilt. Trust "
                        "the new key only after confirming it out of band.", style="bold red")
        else:
            body.append("\n\nCompare this fingerprint with the worker's own "
                        "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before trusting it.")
        with Vertical(classes="dialog" + (" danger" if changed else "")):
            yield Static(Text("Replace the pinned host key?" if changed else "Trust this host "
                              "key?", style="bold"))
            yield Static(body)
            with Horizontal(classes="buttons"):
                yield Button("Trust (y)", id="yes", variant="error" if changed else "primary")
                yield Button("Back (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class NewPoolDialog(ModalScreen[dict[str, str] | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("New worker pool", style="bold"))
            yield Static(Text("Name it by purpose, location and environment, e.g. "
                              "'Azure Central US Production Worker Pool'.",
                              style="bright_black"))
            yield Input(placeholder="name", id="pool-name")
            yield Input(placeholder="description (what runs here)", id="pool-description")
            with Horizontal(classes="buttons"):
                yield Button("Create", id="create", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "pool-name":
            self.query_one("#pool-description", Input).focus()
        else:
            self._create()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self._create()
        else:
            self.dismiss(None)

    def _create(self) -> None:
        name = self.query_one("#pool-name", Input).value.strip()
        if not name:
            self.notify("A pool needs a name.", severity="warning")
            self.query_one("#pool-name", Input).focus()
            return
        self.dismiss({"name": name,
                      "description": self.query_one("#pool-description", Input).value.strip()})


class NoteDialog(ModalScreen[str | None]):
    """Asks for a note to keep with a decision (abort, say); esc keeps nothing."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, prompt: str) -> None:
        super().__init__()
        self.title_text, self.prompt = title, prompt

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog danger"):
            yield Static(Text(self.title_text, style="bold"))
            yield Input(placeholder=self.prompt, id="note")
            yield Static(Text("enter to confirm, esc to go back", style="bright_black"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


class RerunDialog(ModalScreen[dict[str, str] | None]):
    """Confirms a rerun, saying which steps are not run again, and takes the run's
    sensitive values again (they are never kept for a rerun); esc goes back."""

    BINDINGS = [Binding("escape,n", "dismiss(None)", "Back"),
                Binding("y", "rerun", "Rerun", show=False)]

    def __init__(self, title: str, body: str, sensitive: list[str]) -> None:
        super().__init__()
        self.title_text, self.body, self.sensitive = title, body, sensitive

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(plain(self.title_text), style="bold"))
            yield Static(Text(plain(self.body, 2000)))
            for index, name in enumerate(self.sensitive):
                yield Input(placeholder=f"{plain(name, 60)} (sensitive: given again)",
                            password=True, id=f"secret-{index}")
            with Horizontal(classes="buttons"):
                yield Button("Rerun (y)" if not self.sensitive else "Rerun", id="yes",
                             variant="primary")
                yield Button("Back (esc)", id="no")

    def on_mount(self) -> None:
        if self.sensitive:
            self.query_one("#secret-0", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # With values to type, `y` is a letter of them, not the answer.
        return not (action == "rerun" and self.sensitive)

    def action_rerun(self) -> None:
        values = {name: self.query_one(f"#secret-{index}", Input).value
                  for index, name in enumerate(self.sensitive)}
        empty = [index for index, name in enumerate(self.sensitive) if not values[name]]
        if empty:
            self.query_one(f"#secret-{empty[0]}", Input).focus()
            return
        self.dismiss(values)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_rerun()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self.action_rerun()
        else:
            self.dismiss(None)
