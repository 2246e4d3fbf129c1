"""The launch dialog: environment, variables, the plan as it stands now, mode, launch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import work
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


class LaunchDialog(ModalScreen[None]):
    """A common launch: `r`, pick the environment, enter, done."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+l", "launch", "Launch"),
    ]

    def __init__(self, runbook: str) -> None:
        super().__init__()
        self.runbook = runbook
        self.definition: RunbookDef | None = None
        self._replan: Timer | None = None

    def compose(self) -> ComposeResult:
        fleet = self.app.fleet  # type: ignore[attr-defined]
        # Only where this person may launch; four eyes said beside the name.
        envs = [e for e in fleet.environments if fleet.may("launch", e)]
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
                             value=envs[0] if len(envs) == 1 else Select.NULL)
            # Filled with one row per variable once the runbook's definition arrives.
            # Not a tab stop of its own (it would be an invisible one): its fields are.
            yield VerticalScroll(id="launch-variables", can_focus=False)
            yield Static(id="launch-plan")
            with Horizontal(classes="field"):
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
        self.dismiss(None)
        self.app.push_screen(RunScreen(run.id))
