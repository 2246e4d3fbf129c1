"""The launch dialog: environment, variables, the plan as it stands now, mode, launch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from console.client import ApiError
from console.state import plain, safe
from console.typed import view
from wire.paths import segment

if TYPE_CHECKING:
    from wire.runbook import RunbookDef
    from wire.runs import Plan, Run


TYPE_AHEAD_S = 0.7  # letters typed this close together make one name to jump to


class LaunchDialog(ModalScreen[None]):
    """A common launch: `r`, pick the environment, enter, done.

    `quick` (from the launch finder): the environment starts on the last one this
    console launched in (or the only one allowed), a letter jumps to the environment it
    starts, and enter on the environment launches with the values as they stand; a
    production environment then asks for one confirming key."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+l", "launch", "Launch"),
        # Before the Select's own enter (which opens its list): only in quick mode, only
        # on the environment with its list closed (check_action).
        Binding("enter", "quick_launch", "Launch", show=False, priority=True),
    ]

    def __init__(self, runbook: str, *, quick: bool = False) -> None:
        super().__init__()
        self.runbook = runbook
        self.quick = quick
        self.definition: RunbookDef | None = None
        self._replan: Timer | None = None
        self._typed, self._typed_at = "", 0.0

    def compose(self) -> ComposeResult:
        fleet = self.app.fleet  # type: ignore[attr-defined]
        # Only where this person may launch; four eyes said beside the name.
        envs = [e for e in fleet.environments if fleet.may("launch", e)]
        start = envs[0] if len(envs) == 1 else Select.NULL
        last = getattr(self.app, "last_environment", None)
        if self.quick and last in envs:
            start = last
        with Vertical(id="launch-box", classes="dialog"):
            yield Static(Text.assemble(("Run ", "bold"), safe(self.runbook, 100)),
                         id="launch-title")
            with Horizontal(classes="field"):
                yield Label("Environment", classes="label")
                # No default when there is a choice: Production is never one key away.
                # Prompts as Text: a plain str would be parsed as markup ("[/]" crashes it).
                yield Select([(safe(e, 100) + (Text("  four eyes: another person approves "
                                                    "the start", style="yellow")
                                               if e in fleet.four_eyes else Text()), e)
                              for e in envs], id="launch-env",
                             allow_blank=True,
                             prompt="choose an environment",
                             value=start)
            if self.quick:
                yield Static(Text("a letter picks the environment it starts · enter "
                                  "launches with these values · production asks once more",
                                  style="bright_black"), id="launch-hint")
            # Filled with one row per variable once the runbook's definition arrives.
            # Not a tab stop of its own (it would be an invisible one): its fields are.
            yield VerticalScroll(id="launch-variables", can_focus=False)
            yield Static(id="launch-plan")
            with Horizontal(classes="field", id="launch-modes"):
                yield Checkbox("Guided failure (wait on a failed step)", value=True,
                               id="launch-guided")
                yield Checkbox("Step through (wait before each step)", value=False,
                               id="launch-step-through")
            with Horizontal(classes="buttons"):
                yield Button("Launch (ctrl+l)", id="launch", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.load_definition()

    @work(exclusive=True, group="launch-definition", exit_on_error=False)
    async def load_definition(self) -> None:
        try:
            definition: RunbookDef = view(await self.app.api.get(  # type: ignore[attr-defined]
                f"/api/runbooks/{segment(self.runbook)}"))
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            self.dismiss(None)
            return
        self.definition = definition
        box = self.query_one("#launch-variables", VerticalScroll)
        for var in definition.variables:
            row = Horizontal(classes="field")
            await box.mount(row)
            label = var.name + (" (sensitive)" if var.sensitive else "")
            await row.mount(Label(safe(label, 100), classes="label"))
            # Not selected on focus: a typed letter must not silently replace a default.
            await row.mount(Input(value=var.default or "", password=var.sensitive,
                                  placeholder=plain(var.description, 200) or "required",
                                  id=f"var-{var.name}", select_on_focus=False))
        self.query_one("#launch-env", Select).focus()
        self.refresh_plan()

    def _request(self) -> dict[str, Any]:
        env = self.query_one("#launch-env", Select).value
        variables = {}
        for var in self.definition.variables if self.definition else ():
            variables[var.name] = self.query_one(f"#var-{var.name}", Input).value
        return {"runbook": self.runbook,
                "environment": None if env is Select.NULL else env,
                "variables": variables,
                "guided": self.query_one("#launch-guided", Checkbox).value,
                "step_through": self.query_one("#launch-step-through", Checkbox).value}

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.refresh_plan()

    def on_input_changed(self, _event: Input.Changed) -> None:
        # A value typed (a secret the plan was waiting for): plan again once typing pauses.
        if self._replan is not None:
            self._replan.stop()
        self._replan = self.set_timer(0.3, self.refresh_plan)

    @work(exclusive=True, group="launch-plan", exit_on_error=False)
    async def refresh_plan(self) -> None:
        panel = self.query_one("#launch-plan", Static)
        request = self._request()
        # An empty required value would only make the plan fail: plan without it.
        request["variables"] = {k: v for k, v in request["variables"].items() if v}
        try:
            plan: Plan = view(await self.app.api.request(  # type: ignore[attr-defined]
                "POST", "/api/runs/plan", json=request))
        except ApiError as exc:
            panel.update(Text(str(exc), style="yellow"))
            return
        table = Table(box=None, header_style="bold", padding=(0, 1), expand=True)
        table.add_column("#", width=3)
        table.add_column("Step", ratio=2)
        table.add_column("Pool", ratio=3)
        table.add_column("Would take", ratio=2)
        table.add_column("Pool health", ratio=2)
        if plan.missing:
            table.caption = Text("still needed before launching: " +
                                 ", ".join(plan.missing), style="yellow")
        for position, step in enumerate(plan.steps, 1):
            if step.manual:
                table.add_row(str(position), safe(step.name), "-", "an operator", "")
                continue
            healthy, total = step.healthy_workers or 0, step.workers or 0
            health = Text(f"{healthy}/{total} healthy",
                          style="red" if healthy == 0 else "yellow" if healthy < 2 else "green")
            health.append(f" · {step.leased}/{step.capacity} slots", style="bright_black")
            if step.queued:
                health.append(f" · {step.queued} queued", style="yellow")
            if step.would_take:
                taking = ", ".join(step.would_take)
                if step.would_skip:  # an "all" step: say who it would leave out
                    taking += f" (not {', '.join(s.worker for s in step.would_skip)})"
            elif healthy:
                taking = "queues: every slot is taken"
            else:
                taking = "nobody healthy now"
            table.add_row(str(position), safe(step.name), safe(step.pool),
                          safe(taking), health)
        panel.update(table)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "quick_launch":
            select = self.query_one("#launch-env", Select)
            return self.quick and self.focused is select and not select.expanded
        return True

    def on_key(self, event: events.Key) -> None:
        """Quick mode: a letter on the environment jumps to the environment it starts
        (letters typed together spell more of the name)."""
        select = self.query_one("#launch-env", Select)
        if not (self.quick and self.focused is select and not select.expanded
                and event.character and event.character.isprintable()
                and not event.character.isspace()):
            return
        now = time.monotonic()
        self._typed = (self._typed if now - self._typed_at < TYPE_AHEAD_S else "") + \
            event.character.lower()
        self._typed_at = now
        envs = [str(value) for _prompt, value in select._options if value is not Select.NULL]
        found = next((e for e in envs if e.lower().startswith(self._typed)), None)
        if found is not None:
            select.value = found
        event.stop()
        event.prevent_default()

    def action_quick_launch(self) -> None:
        env = self.query_one("#launch-env", Select).value
        if env is Select.NULL or self.definition is None:
            return
        missing = [v.name for v in self.definition.variables
                   if not self.query_one(f"#var-{v.name}", Input).value]
        if missing:
            # Not launched with a value missing: its field, to be typed.
            self.query_one(f"#var-{missing[0]}", Input).focus()
            self.notify(f"{plain(missing[0], 60)} needs a value.", markup=False)
            return
        if "prod" not in str(env).lower():
            self.action_launch()
            return
        from console.screens.modals import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_launch()

        self.app.push_screen(ConfirmDialog(
            f"Launch {self.runbook} on {env}?",
            "With the values shown; y launches, n or esc goes back.", confirm="Launch"),
            answered)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        if self.definition is not None:
            self.launch()

    @work(exclusive=True, group="launch", exit_on_error=False)
    async def launch(self) -> None:
        from console.screens.run import RunScreen

        try:
            run: Run = view(await self.app.api.request(  # type: ignore[attr-defined]
                "POST", "/api/runs", json=self._request()))
        except ApiError as exc:
            self.notify(str(exc), title="Not launched", severity="error", markup=False,
                        timeout=8)
            return
        self.app.last_environment = run.environment  # type: ignore[attr-defined]
        self.dismiss(None)
        self.app.push_screen(RunScreen(run.id))
