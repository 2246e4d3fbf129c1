"""The runbook editor: name, description, variables and pool variables, and the steps,
each with a script editor that highlights bash. Saving checks the whole runbook first."""

from __future__ import annotations

import contextlib
import json
import weakref
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, ListItem, ListView, Select, Static, TextArea

from console.client import ApiError
from console.screens.modals import ConfirmDialog
from console.state import plain, safe
from wire.paths import segment
from wire.runbook import RunbookDef, RunbookError, Step, from_data, to_toml

NEW_STEP = {"name": "New step", "script": "echo hello\n", "manual": None, "pool": None,
            "timeout": 3600, "container": None, "retries": 0, "run_on": "any",
            "condition": "success", "approval": "anyone"}

VARIABLES_HELP = """\
# Variables (prompted at launch) and worker pool variables, in TOML:
# [variables]
# service = "nginx"
# [variables.api_token]
# sensitive = true
# [pools.WebPool]
# Production = "Azure Central US Production Worker Pool"
"""


def _variables_toml(book: dict[str, Any]) -> str:
    """The variables and pools of a runbook as the TOML an operator edits."""
    definition = RunbookDef(name="x", variables=book.get("variables", []),
                            pools=book.get("pools", {}), steps=[Step.model_validate(NEW_STEP)])
    text = to_toml(definition)
    body = text.split("\n[[steps]]", 1)[0].split("\n", 2)[2].strip()
    return (body + "\n") if body else VARIABLES_HELP


_OPEN: weakref.WeakSet[RunbookEditor] = weakref.WeakSet()


def open_editors() -> list[RunbookEditor]:
    """The runbook editors open in any view (quitting asks when one is not saved)."""
    return [editor for editor in _OPEN if editor.is_attached]


class RunbookEditor(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="save", priority=True),
        Binding("ctrl+n", "add_step", "Add step", id="add_step", priority=True),
        Binding("ctrl+d", "remove_step", "Remove step", id="remove_step", priority=True),
        # Priority: a text box would otherwise take esc (and move the focus instead).
        Binding("escape", "close", "Close", id="close", priority=True),
    ]

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.runbook_name = name
        self.steps: list[dict[str, Any]] = [dict(NEW_STEP)]
        self.current = 0
        self._saved_state = ""  # what the fields held when loaded or last saved
        _OPEN.add(self)

    @property
    def unsaved(self) -> bool:
        return self.is_mounted and self._state() != self._saved_state

    def compose(self) -> ComposeResult:
        with Horizontal(classes="editor-row"):
            yield Label("Name", classes="label")
            yield Input(id="edit-name", placeholder="Restart web tier")
        with Horizontal(classes="editor-row"):
            yield Label("Description", classes="label")
            yield Input(id="edit-description", placeholder="what it does, in a sentence")
        with Horizontal(id="editor-body"):
            with Vertical(id="editor-left"):
                yield Static(Text("Variables and pool variables (TOML)", style="bold"))
                # Tab moves to the next field from inside a text box, as everywhere.
                yield TextArea.code_editor(VARIABLES_HELP, language="toml",
                                           id="edit-variables", tab_behavior="focus")
                yield Static(Text("Steps  ctrl+n add · ctrl+d remove", style="bold"))
                yield ListView(id="edit-steps")
            with Vertical(id="editor-right"):
                with Horizontal(classes="editor-row"):
                    yield Label("Step name", classes="label")
                    yield Input(id="step-name")
                with Horizontal(classes="editor-row"):
                    yield Label("Pool", classes="label")
                    yield Input(id="step-pool", placeholder="a pool or pool variable; empty: "
                                "the default pool")
                with Horizontal(classes="editor-row"):
                    yield Label("Runs on", classes="label")
                    yield Select([("one worker", "any"), ("every healthy worker", "all"),
                                  ("every member, or fail", "every")],
                                 id="step-run-on", allow_blank=False, value="any")
                    yield Label("When", classes="label short")
                    yield Select([("previous steps succeeded", "success"),
                                  ("a step failed", "failure"), ("always", "always")],
                                 id="step-condition", allow_blank=False, value="success")
                with Horizontal(classes="editor-row"):
                    yield Label("Timeout (s)", classes="label")
                    yield Input(id="step-timeout", type="integer")
                    yield Label("Retries", classes="label short")
                    yield Input(id="step-retries", type="integer")
                with Horizontal(classes="editor-row"):
                    yield Label("Container", classes="label")
                    yield Input(id="step-container", placeholder="optional image, e.g. "
                                "debian:12")
                with Horizontal(classes="editor-row"):
                    yield Label("Manual", classes="label")
                    yield Input(id="step-manual", placeholder="instructions: makes this a "
                                "manual step (no script)")
                    yield Label("Approved by", classes="label short")
                    yield Select([("anyone allowed", "anyone"),
                                  ("another person", "another person")],
                                 id="step-approval", allow_blank=False, value="anyone")
                yield Static(Text("Script (bash)", style="bold"))
                yield TextArea.code_editor("", language="bash", id="step-script",
                                           tab_behavior="focus")
        yield Static(id="editor-status")
        yield Footer()

    def on_mount(self) -> None:
        if self.runbook_name:
            self.load()
        else:
            self._show_steps()
            self._show_step(0)
            self.call_after_refresh(self._mark_saved)
        self.query_one("#edit-name", Input).focus()

    @work(exclusive=True, group="editor-load", exit_on_error=False)
    async def load(self) -> None:
        try:
            book = await self.app.api.get(  # type: ignore[attr-defined]
                f"/api/runbooks/{segment(self.runbook_name or '')}")
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.query_one("#edit-name", Input).value = book["name"]
        self.query_one("#edit-description", Input).value = book["description"]
        self.query_one("#edit-variables", TextArea).text = _variables_toml(book)
        self.steps = [dict(step) for step in book["steps"]]
        self._show_steps()
        self._show_step(0)
        self.call_after_refresh(self._mark_saved)

    # -------------------------------------------------------- steps

    def _show_steps(self) -> None:
        steps = self.query_one("#edit-steps", ListView)
        steps.clear()
        for position, step in enumerate(self.steps, 1):
            kind = " (manual)" if step.get("manual") is not None else ""
            steps.append(ListItem(Label(safe(f"{position}. {step['name']}{kind}"))))
        with contextlib.suppress(Exception):
            steps.index = self.current

    def _show_step(self, index: int) -> None:
        self.current = max(0, min(index, len(self.steps) - 1))
        step = self.steps[self.current]
        self.query_one("#step-name", Input).value = step["name"]
        self.query_one("#step-pool", Input).value = step.get("pool") or ""
        self.query_one("#step-run-on", Select).value = \
            "every" if step.get("require_all") else step.get("run_on", "any")
        self.query_one("#step-condition", Select).value = step.get("condition", "success")
        self.query_one("#step-timeout", Input).value = str(step.get("timeout", 3600))
        self.query_one("#step-retries", Input).value = str(step.get("retries", 0))
        self.query_one("#step-container", Input).value = step.get("container") or ""
        self.query_one("#step-manual", Input).value = step.get("manual") or ""
        self.query_one("#step-approval", Select).value = step.get("approval", "anyone")
        self.query_one("#step-script", TextArea).text = step.get("script") or ""

    def _keep_step(self) -> None:
        """Put the form back into the step it shows, before showing another or saving."""
        manual = self.query_one("#step-manual", Input).value.strip()

        def number(widget_id: str, default: int) -> int:
            try:
                return int(self.query_one(widget_id, Input).value)
            except ValueError:
                return default

        run_on = self.query_one("#step-run-on", Select).value
        self.steps[self.current] = {
            "name": self.query_one("#step-name", Input).value.strip(),
            "pool": self.query_one("#step-pool", Input).value.strip() or None,
            "run_on": "any" if run_on == "any" else "all",
            "require_all": run_on == "every",
            "condition": self.query_one("#step-condition", Select).value,
            "timeout": number("#step-timeout", 3600),
            "retries": number("#step-retries", 0),
            "container": self.query_one("#step-container", Input).value.strip() or None,
            "manual": manual or None,
            # Who may approve: only a manual step is approved.
            "approval": self.query_one("#step-approval", Select).value if manual
            else "anyone",
            "script": "" if manual else self.query_one("#step-script", TextArea).text,
        }

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        index = event.list_view.index
        if index is not None and index != self.current and index < len(self.steps):
            self._keep_step()
            self._show_step(index)

    def action_add_step(self) -> None:
        self._keep_step()
        self.steps.insert(self.current + 1, dict(NEW_STEP))
        self.current += 1
        self._show_steps()
        self._show_step(self.current)
        self.query_one("#step-name", Input).focus()

    def action_remove_step(self) -> None:
        if len(self.steps) == 1:
            self.notify("A runbook needs at least one step.", severity="warning")
            return
        del self.steps[self.current]
        self.current = max(0, self.current - 1)
        self._show_steps()
        self._show_step(self.current)

    # -------------------------------------------------------- saving

    def document(self) -> str:
        """The runbook as TOML, checked whole; RunbookError says where it is wrong."""
        import tomllib

        self._keep_step()
        variables_text = self.query_one("#edit-variables", TextArea).text
        try:
            extra = tomllib.loads(variables_text)
        except tomllib.TOMLDecodeError as exc:
            raise RunbookError(f"variables: not valid TOML ({exc}).") from None
        steps = []
        for step in self.steps:
            entry = {k: v for k, v in step.items() if v is not None and v != ""}
            if step.get("manual"):
                entry.pop("script", None)
            steps.append(entry)
        data = {"name": self.query_one("#edit-name", Input).value.strip(),
                "description": self.query_one("#edit-description", Input).value.strip(),
                **{k: v for k, v in extra.items() if k in ("variables", "pools")},
                "steps": steps}
        unknown = sorted(set(extra) - {"variables", "pools"})
        if unknown:
            raise RunbookError(f"variables: only [variables] and [pools] tables belong here, "
                               f"not {unknown[0]!r}.")
        return to_toml(from_data(data, "the editor"))

    def action_save(self) -> None:
        status = self.query_one("#editor-status", Static)
        try:
            text = self.document()
        except RunbookError as exc:
            status.update(Text(str(exc), style="bold red"))
            return
        status.update(Text("saving…", style="bright_black"))
        self.save(text)

    @work(exclusive=True, group="editor-save", exit_on_error=False)
    async def save(self, text: str) -> None:
        status = self.query_one("#editor-status", Static)
        refused = await _shell_syntax(self.steps)
        if refused:
            status.update(Text(refused, style="bold red"))
            return
        try:
            saved = await self.app.api.request(  # type: ignore[attr-defined]
                "POST", "/api/runbooks", json={"toml": text, "source": "the editor",
                                               "replaces": self.runbook_name or ""})
        except ApiError as exc:
            status.update(Text(str(exc), style="bold red"))
            return
        before, self.runbook_name = self.runbook_name, saved["name"]
        self._saved_state = self._state()
        status.update(Text.assemble(("saved ", "green"), safe(saved["name"])))
        copy = f" as a copy: {before} is kept (d in Runbooks removes it)" \
            if before and before != saved["name"] else ""
        self.notify(plain(f"Saved runbook {saved['name']}{copy}."), markup=False)

    def _state(self) -> str:
        self._keep_step()
        return json.dumps([self.query_one("#edit-name", Input).value,
                           self.query_one("#edit-description", Input).value,
                           self.query_one("#edit-variables", TextArea).text, self.steps],
                          sort_keys=True, default=str)

    def _mark_saved(self) -> None:
        self._saved_state = self._state()

    def action_close(self) -> None:
        for select in self.query(Select):
            if select.expanded:  # esc first closes an open list
                select.expanded = False
                return
        if self._state() == self._saved_state:
            self.app.pop_screen()
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(ConfirmDialog(
            "Discard your changes?", "This runbook has changes that are not saved "
            "(ctrl+s saves them).", confirm="Discard"), answered)


async def _shell_syntax(steps: list[dict[str, Any]]) -> str:
    """Where `bash -n` refuses a step's script, as one sentence ("" when none does, or
    when this machine has no bash to ask)."""
    import asyncio
    import shutil

    bash = shutil.which("bash")
    if bash is None:
        return ""
    for number, step in enumerate(steps, 1):
        if step.get("manual") or not (step.get("script") or "").strip():
            continue
        process = await asyncio.create_subprocess_exec(
            bash, "-n", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            _out, err = await asyncio.wait_for(process.communicate(step["script"].encode()),
                                               timeout=5)
        except TimeoutError:
            process.kill()
            continue
        if process.returncode:
            said = err.decode(errors="replace").strip().splitlines()
            # "bash: line 3: syntax error near unexpected token `fi'"
            first = said[0].removeprefix("bash: ") if said else "syntax error"
            return plain(f"Step {number} ({step['name']}): the script does not parse: "
                         f"{first}.", 400)
    return ""
