"""One worker in detail: connection, host key, facts, and its health over time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from console.client import ApiError
from console.display import ago, engine
from console.screens.base import FleetScreen
from console.screens.worker_verbs import WORKER_VERBS, WorkerVerbs
from console.state import plain, safe, status_text
from console.typed import view
from wire.paths import segment

if TYPE_CHECKING:
    from wire.workers import HealthRecord, Worker


def _kv(rows: list[tuple[str, Text | str]]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column(style="bright_black", no_wrap=True, width=14)
    table.add_column(overflow="fold", ratio=1)
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else safe(value, 300))
    return table


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


class WorkerDetailScreen(WorkerVerbs, FleetScreen):
    VIEW_NAME = "Worker"
    FILTERABLE = False

    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        *WORKER_VERBS,
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.worker_name = name
        self.history: list[HealthRecord] = []
        self._last_checked: str | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with VerticalScroll(id="detail-body"):
            yield Static(id="detail-headline")
            with Horizontal(id="detail-panels"):
                yield Static(id="detail-connection", classes="panel")
                yield Static(id="detail-facts", classes="panel")
            with Vertical(id="detail-history", classes="panel"):
                yield Static(id="latency-title")
                yield Sparkline([], id="latency-sparkline")
                yield Static(id="history-list")
        yield from self.compose_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.load_history()

    def selected_worker(self) -> Worker | None:
        return self.wapp.fleet.workers.get(self.worker_name)

    def action_back(self) -> None:
        self.app.pop_screen()

    @work(exclusive=True, group="history", exit_on_error=False)
    async def load_history(self) -> None:
        try:
            self.history = view(await self.wapp.api.get(
                f"/api/workers/{segment(self.worker_name)}/history"))
        except ApiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self._show_history()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        if changed is not None and self.worker_name not in changed:
            return
        worker = self.selected_worker()
        if worker is None:
            self.query_one("#detail-headline", Static).update(
                Text(f"{plain(self.worker_name, 100)} was removed.", style="bold red"))
            return
        self._show_worker(worker)
        if worker.checked_at != self._last_checked:
            if self._last_checked is not None:
                self.load_history()
            self._last_checked = worker.checked_at

    def _show_worker(self, w: Worker) -> None:
        self.query_one("#view-title", Static).update(Text.assemble(
            ("Worker ", "bold"), safe(w.name, 100)))
        headline = Text()
        headline.append_text(safe(w.name, 100))
        if w.builtin:
            headline.append(" (built-in: runs on the server's machine)", style="italic")
        if w.dynamic:
            headline.append(" (dynamic: made by its pool's provisioner, destroyed when idle)",
                            style="italic cyan")
        headline.append("   ")
        headline.append_text(status_text(w.status))
        headline.append(f"   checked {ago(w.checked_at)}", style="bright_black")
        if w.reason:
            headline.append("\n")
            headline.append_text(safe(w.reason, 500))
        self.query_one("#detail-headline", Static).update(headline)

        host_key = Text(w.host_key or "not pinned", style="" if w.host_key else "yellow")
        rows: list[tuple[str, Text | str]] = [
            ("Address", "this machine" if w.builtin else f"{w.host}:{w.port}"),
            ("User", w.user or "(the server's account)"),
            ("Key", "-" if w.builtin else
             w.key_path or ("ssh-agent" if w.use_agent else "default keys")),
            ("Host key", "-" if w.builtin else host_key),
        ]
        if w.presented_host_key:
            rows.append(("Presented", Text(w.presented_host_key, style="bold yellow")))
            rows.append(("", Text("press t to review and trust it", style="bright_black")))
        rows += [
            ("Pools", ", ".join(w.pools)),
            ("Capacity", f"{w.capacity} slots"),
            ("Enabled", "yes" if w.enabled else "no (d to enable)"),
            ("Work folder", w.work_dir),
        ]
        self.query_one("#detail-connection", Static).update(_kv(rows))

        f = w.facts
        fact_rows: list[tuple[str, Text | str]] = [
            ("OS", f.os or "-"),
            ("Kernel", f"{f.kernel or '-'} {f.arch or ''}".strip()),
            ("Host name", f.hostname or "-"),
            ("CPUs", str(f.cpus if f.cpus is not None else "-")),
            ("Uptime", _uptime(f.uptime_s)),
            ("Load 1/5/15", " ".join(f"{v:.2f}" for v in f.load) if f.load else "-"),
            ("Containers", engine(f.container_engine)),
        ]
        if f.mem_total_mb is not None:
            fact_rows.append(("Memory", f"{(f.mem_available_mb or 0) / 1024:.1f} GB free "
                                        f"of {f.mem_total_mb / 1024:.1f} GB"))
        for disk in f.disks or ():
            fact_rows.append((f"Disk {disk.mount}"[:14],
                              f"{disk.free_mb / 1024:.1f} GB free of "
                              f"{disk.size_mb / 1024:.1f} GB"))
        latency = w.latency_ms
        fact_rows.append(("Latency", f"{latency:.1f} ms command" if latency is not None else "-"))
        if w.connect_ms is not None:
            fact_rows.append(("", f"{w.connect_ms:.1f} ms to connect"))
        self.query_one("#detail-facts", Static).update(_kv(fact_rows))

    def _show_history(self) -> None:
        points = [h.latency_ms for h in self.history if h.latency_ms is not None]
        self.query_one("#latency-sparkline", Sparkline).data = points or [0.0]
        title = Text("Latency history", style="bold")
        if points:
            title.append(f"  last {len(points)} checks · min {min(points):.1f} ms · "
                         f"max {max(points):.1f} ms · now {points[-1]:.1f} ms",
                         style="bright_black")
        else:
            title.append("  no successful checks yet", style="bright_black")
        self.query_one("#latency-title", Static).update(title)
        recent = Text()
        previous = None
        # Show status changes, newest first: what an operator asks is "since when".
        changes = []
        for h in self.history:
            if h.status != previous:
                changes.append(h)
                previous = h.status
        for h in reversed(changes[-8:]):
            recent.append(f"{(h.checked_at or '')[:19].replace('T', ' ')}  ",
                          style="bright_black")
            recent.append_text(status_text(h.status))
            if h.reason:
                recent.append("  ")
                recent.append_text(safe(h.reason, 200))
            recent.append("\n")
        self.query_one("#history-list", Static).update(recent)
