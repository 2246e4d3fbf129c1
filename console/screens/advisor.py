"""The Advisor view: what in the fleet goes against the worker recommendations, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from console.client import ApiError
from console.display import plural
from console.screens.base import FleetScreen
from console.state import matches, safe
from console.typed import view
from console.widgets.live_table import LiveTable

if TYPE_CHECKING:
    from wire.events import AdviceCounts
    from wire.server import Finding

SEVERITY_STYLE = {"critical": ("✖ critical", "bold red"), "warning": ("▲ warning", "yellow")}
ORDER = {"critical": 0, "warning": 1}


def finding_cells(finding: Finding) -> list[Text]:
    label, style = SEVERITY_STYLE.get(finding.severity, (finding.severity, ""))
    return [Text(label, style=style), Text(finding.check, style="bright_black"),
            safe(finding.name, 80), safe(finding.finding, 300)]


class AdvisorScreen(FleetScreen):
    VIEW_NAME = "Advisor"

    BINDINGS = [
        Binding("enter", "open", "Open", id="open"),
        Binding("r", "reload", "Look again", id="reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[Finding] = []
        self._counts: AdviceCounts | None = None
        self._counted = False  # whether _counts says what the server counted

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="advisor-body"):
            table = LiveTable(id="findings-table", fill="finding",
                              sort_key=lambda key, f: (ORDER.get(f.severity, 9),
                                                       int(key.split(":")[0])),
                              cells=lambda _key, finding: finding_cells(finding),
                              name_of=lambda _key, finding: finding.name)
            table.set_columns([("severity", "Severity", 10), ("check", "Check", 16, 1),
                               ("name", "Worker or pool", 30, 0, 20),
                               ("finding", "Finding", None, 0, 30)])
            yield table
            yield Static(id="finding-detail", classes="panel")
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#findings-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self.load()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.load()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        counts = self.wapp.fleet.advice
        if counts != self._counts and self._counted:
            self.load()  # the server counted differently: the findings changed
        self._counts, self._counted = counts, True
        self._show()

    def filter_changed(self) -> None:
        self._show()

    @work(exclusive=True, group="advice", exit_on_error=False)
    async def load(self) -> None:
        try:
            self.findings = view(await self.wapp.api.get("/api/advice"))
        except ApiError as exc:
            self.query_one("#finding-detail", Static).update(Text(str(exc), style="yellow"))
            return
        self._show()

    def action_reload(self) -> None:
        self.load()

    def _show(self) -> None:
        text = self.filter_text
        self.table.sync({f"{index}:{f.check}:{f.name}": f
                         for index, f in enumerate(self.findings)
                         if matches(text, f.severity, f.check, f.name, f.finding)})
        critical = sum(1 for f in self.findings if f.severity == "critical")
        self.query_one("#view-title", Static).update(Text.assemble(
            ("Advisor", "bold"), (f"  {plural(len(self.findings), 'finding')}, {critical} critical",
                                  "bright_black")))
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#finding-detail", Static)
        key = self.table.selected_key
        finding = next((f for i, f in enumerate(self.findings)
                        if f"{i}:{f.check}:{f.name}" == key), None)
        if finding is None:
            detail.update(Text("✓ Nothing to advise: the fleet follows the worker "
                               "recommendations.", style="green") if not self.findings
                          else "")
            return
        text = Text()
        text.append_text(safe(finding.finding, 300))
        text.stylize("bold")
        text.append("\n")
        text.append_text(safe(finding.advice, 600))
        if finding.subject in ("worker", "pool"):
            text.append(f"\nenter: open the {finding.subject}", style="bright_black")
        detail.update(text)

    def on_live_table_row_highlighted(self, _event: LiveTable.RowHighlighted) -> None:
        self._show_detail()

    def on_live_table_row_selected(self, _event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        key = self.table.selected_key
        finding = next((f for i, f in enumerate(self.findings)
                        if f"{i}:{f.check}:{f.name}" == key), None)
        if finding is None:
            return
        if finding.subject == "worker" and finding.name in self.wapp.fleet.workers:
            from console.screens.worker_detail import WorkerDetailScreen

            self.app.push_screen(WorkerDetailScreen(finding.name))
        elif finding.subject == "pool":
            self.app.switch_mode("pools")
            screen = self.app.screen
            if hasattr(screen, "select_pool"):
                screen.select_pool(finding.name)
