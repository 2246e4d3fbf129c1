"""Dialogs: the `:` command line, help, confirmations, trusting a host key, a new pool."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static

from console.state import plain, safe


class CommandLine(ModalScreen[str | None]):
    """k9s-style `:` prompt at the bottom of the screen."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Horizontal(id="command-line"):
            yield Label(":")
            yield Input(placeholder="workers [filter] · pools [filter] · dashboard · check "
                        "[worker…] · help · quit", id="command-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


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
        seen = set()
        owners = [*type(self.under).__mro__, *type(self.app).__mro__]
        for owner in owners:
            for binding in owner.__dict__.get("BINDINGS", []):
                if not isinstance(binding, Binding) or binding.action in seen:
                    continue
                seen.add(binding.action)
                keys = ", ".join(self.app.get_key_display(Binding(k, "")) for k in
                                 binding.key.split(","))
                table.add_row(keys, binding.description or binding.action)
        table.add_row("ctrl+p", "Command palette")
        table.add_row("", "")
        table.add_row(":workers web", "Jump to a view, filtered (also :pools, :dashboard)")
        table.add_row(":check NAME", "Health-check workers now")
        title = getattr(self.under, "VIEW_NAME", "") or "Workdeck"
        with Vertical(id="help-box", classes="dialog"):
            yield Static(Text(f"Keys · {title}", style="bold"))
            with VerticalScroll():
                yield Static(table)
            yield Static(Text("esc to close", style="bright_black"))


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, title: str, body: str, *, confirm: str = "Yes") -> None:
        super().__init__()
        self.title_text, self.body, self.confirm = title, body, confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(plain(self.title_text), style="bold"))
            yield Static(Text(plain(self.body, 2000)))
            with Horizontal(classes="buttons"):
                yield Button(f"{self.confirm} (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TrustDialog(ModalScreen[bool]):
    """Shows the presented fingerprint before an operator pins it; loud when a key changed."""

    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Trust")]

    def __init__(self, worker: dict[str, Any]) -> None:
        super().__init__()
        self.worker = worker

    def compose(self) -> ComposeResult:
        w = self.worker
        changed = bool(w.get("host_key"))
        body = Text()
        body.append("Worker       ")
        body.append_text(safe(w["name"]))
        body.append("\nAddress      ")
        body.append_text(safe(f"{w['host']}:{w['port']}"))
        body.append("\nPresented    ")
        body.append(w["presented_host_key"] or "-", style="bold")
        if changed:
            body.append("\nPinned now   ")
            body.append(w["host_key"], style="bold")
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
                yield Button("Cancel (n)", id="no")

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
