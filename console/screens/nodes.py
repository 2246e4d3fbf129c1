"""The Nodes view: the servers using this store, read again every few seconds (their
heartbeats move on their own): up, stopped or lost, when each was last seen, what each
does. An admin drains or undrains the one selected (`d`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.binding import Binding

from console.client import ApiError
from console.display import ago
from console.screens.read_table import ReadTableScreen
from console.state import matches, plain, safe
from console.widgets.live_table import ColumnSpec
from wire.paths import segment

if TYPE_CHECKING:
    from wire.nodes import Node

COLUMNS: list[ColumnSpec] = [
    ("name", "Node", 22, 0, 16), ("state", "State", 18), ("seen", "Seen", 9),
    ("workers", "Workers", 8), ("runs", "Runs", 5), ("version", "Version", 9, 2),
    ("address", "Address", None, 1)]
STATE_STYLE = {"up": "green", "stopped": "bright_black", "lost": "bold red"}


class NodesScreen(ReadTableScreen):
    VIEW_NAME = "Nodes"
    TABLE_ID = "nodes-table"
    COLUMNS = COLUMNS
    FILL = "address"
    PATH = "/api/nodes"

    BINDINGS = [Binding("d", "toggle_node_drain", "Drain/undrain", id="toggle_node_drain")]

    def sort_key(self, key: str, _row: Any) -> Any:
        return key

    def row(self, item: Any, text: str) -> list[Text] | None:
        node: Node = item
        if not matches(text, node.name, node.state, node.host, node.address):
            return None
        return [safe(node.name, 64) + (Text(" (this)", style="bright_black") if node.this
                                       else Text()),
                Text(node.state, style=STATE_STYLE.get(node.state, ""))
                + (Text(", draining", style="yellow") if node.draining else Text()),
                Text(ago(node.last_seen) if node.last_seen else "-", style="bright_black"),
                Text(str(node.workers_checked)), Text(str(node.runs_executing)),
                safe(node.version, 20), safe(node.address, 200)]

    def action_toggle_node_drain(self) -> None:
        name = self.table.selected_key
        node = self.items.get(name or "")
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
        self.read_items()
