"""The Nodes view: the servers using this store, read again every few seconds (their
heartbeats move on their own): up, stopped or lost, when each was last seen, what each
does. An admin drains or undrains the one selected (`d`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding

from console.client import ApiError
from console.display import ago
from console.screens.base import FleetScreen
from console.state import matches, plain, safe
from console.typed import view
from console.widgets.live_table import LiveTable
from wire.paths import segment

if TYPE_CHECKING:
    from wire.nodes import Node

COLUMNS = [("name", "Node", 22), ("state", "State", 18), ("seen", "Seen", 9),
           ("workers", "Workers", 8), ("runs", "Runs", 5), ("version", "Version", 9),
           ("address", "Address", None)]
READ_EVERY_S = 3.0
STATE_STYLE = {"up": "green", "stopped": "bright_black", "lost": "bold red"}


class NodesScreen(FleetScreen):
    VIEW_NAME = "Nodes"

    BINDINGS = [Binding("d", "toggle_node_drain", "Drain/undrain", id="toggle_node_drain")]

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, Node] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        table = LiveTable(id="nodes-table", fill="address", sort_key=lambda key, _row: key)
        table.set_columns(COLUMNS)
        yield table
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#nodes-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self.read_nodes()
        self.set_interval(READ_EVERY_S, self.read_nodes)

    @work(exclusive=True, group="nodes", exit_on_error=False)
    async def read_nodes(self) -> None:
        try:
            nodes: list[Node] = view(await self.wapp.api.get("/api/nodes"))
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.nodes = {node.name: node for node in nodes}
        self._show()

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        self._show()

    def _show(self) -> None:
        text = self.filter_text
        self.table.sync({name: [
            safe(name, 64) + (Text(" (this)", style="bright_black") if node.this else Text()),
            Text(node.state, style=STATE_STYLE.get(node.state, ""))
            + (Text(", draining", style="yellow") if node.draining else Text()),
            Text(ago(node.last_seen) if node.last_seen else "-", style="bright_black"),
            Text(str(node.workers_checked)), Text(str(node.runs_executing)),
            safe(node.version, 20), safe(node.address, 200)]
            for name, node in self.nodes.items()
            if matches(text, name, node.state, node.host, node.address)})

    def action_toggle_node_drain(self) -> None:
        name = self.table.selected_key
        node = self.nodes.get(name or "")
        if node is not None:
            self.set_draining(node.name, not node.draining)

    @work(group="nodes-change", exit_on_error=False)
    async def set_draining(self, name: str, draining: bool) -> None:
        try:
            await self.wapp.api.request("PATCH", f"/api/nodes/{segment(name)}",
                                        json={"draining": draining})
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.notify(f"{plain(name, 64)} " + ("takes no new runs: it finishes what it runs."
                                            if draining else "takes new runs again."),
                    markup=False)
        self.read_nodes()
