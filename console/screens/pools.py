"""The Pools view: every pool live, and one opened: members, leases, queue, history."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from console.client import ApiError
from console.display import ago
from console.screens.base import FleetScreen
from console.screens.dashboard import pools_table
from console.screens.worker_verbs import WORKER_VERBS, WorkerVerbs
from console.screens.workers import drain_note
from console.state import matches, meter, safe, sparkline, status_text, worker_name_text
from console.typed import view
from console.widgets.live_table import ColumnSpec, LiveTable
from wire.paths import segment

if TYPE_CHECKING:
    from wire.pools import PoolDetail
    from wire.workers import Worker

MEMBER_COLUMNS: list[ColumnSpec] = [
    ("name", "Worker", 24, 0, 16), ("status", "Status", 13), ("leased", "Leased", 6),
    ("reason", "Why", None, 1)]
LEASE_COLUMNS: list[ColumnSpec] = [
    ("run", "Run", 16, 0, 8), ("step", "Step", 16, 0, 12), ("worker", "Worker", 22, 0, 16),
    ("since", "Since", 7), ("reason", "Why this worker", None, 1)]
QUEUE_COLUMNS: list[ColumnSpec] = [
    ("run", "Run", 8), ("step", "Step", 22, 0, 12), ("for", "For", 24, 1),
    ("since", "Waiting", None)]
DETAIL_REFRESH_S = 2.0  # leases and the queue are read again at least this often


def member_cells(worker: Worker) -> list[Text]:
    status = status_text(worker.status)
    if worker.draining:
        status.append(" ⇣", style="yellow")
    leases = worker.leased
    return [worker_name_text(worker), status,
            Text(f"{leases}/{worker.capacity}", style="bold" if leases else "bright_black"),
            drain_note(worker) + safe(worker.reason, 300)]


class PoolsScreen(WorkerVerbs, FleetScreen):
    VIEW_NAME = "Pools"

    BINDINGS = [
        Binding("n", "new_pool", "New pool", id="new_pool"),
        Binding("enter", "open", "Open", id="open"),
        Binding("tab", "app.focus_next", "Next panel", id="switch_panel"),
        *WORKER_VERBS,
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="pools-body"):
            yield pools_table("pools-table", self.wapp.fleet)
            yield Static(id="pool-headline", classes="panel")
            with Horizontal(id="pool-detail"):
                with Vertical(id="pool-members-side"):
                    yield Static(id="members-title", classes="section-title")
                    members = LiveTable(id="members-table", fill="reason",
                                        sort_key=lambda key, _w: key.lower(),
                                        cells=lambda _name, worker: member_cells(worker))
                    members.set_columns(MEMBER_COLUMNS)
                    yield members
                with Vertical(id="pool-work-side"):
                    yield Static(id="leases-title", classes="section-title")
                    leases = LiveTable(id="leases-table", fill="reason",
                                       sort_key=lambda _key, row: row[0].plain)
                    leases.set_columns(LEASE_COLUMNS)
                    yield leases
                    yield Static(id="queue-title", classes="section-title")
                    queue = LiveTable(id="queue-table", fill="since",
                                      sort_key=lambda key, _row: int(key.split(":")[0]))
                    queue.set_columns(QUEUE_COLUMNS)
                    yield queue
        yield from self.compose_bottom()

    @property
    def pools_table(self) -> LiveTable:
        return self.query_one("#pools-table", LiveTable)

    @property
    def members_table(self) -> LiveTable:
        return self.query_one("#members-table", LiveTable)

    def focus_main(self) -> None:
        self.pools_table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.pools_table.focus()
        self.set_interval(DETAIL_REFRESH_S, self._tick)

    def _tick(self) -> None:
        self.pools_table.refresh_cells()  # sparklines move on with the clock
        self.load_detail()

    # -------------------------------------------------------- data

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        fleet = self.wapp.fleet
        text = self.filter_text
        self.pools_table.sync({name: pool for name, pool in fleet.pools.items()
                               if matches(text, name, pool.description)})
        selected = self.pools_table.selected_key
        if changed is None or selected in changed or changed & set(self._member_names()):
            self._show_pool()
            if changed is None or selected in changed:
                self.load_detail()  # leases or the queue may have moved with the figures

    def _member_names(self) -> list[str]:
        pool = self.wapp.fleet.pools.get(self.pools_table.selected_key or "")
        return pool.members if pool else []

    def _show_pool(self) -> None:
        fleet = self.wapp.fleet
        name = self.pools_table.selected_key
        pool = fleet.pools.get(name or "")
        headline = self.query_one("#pool-headline", Static)
        if pool is None:
            headline.update(Text("No pool selected.", style="bright_black"))
            self.members_table.sync({})
            return
        text = Text()
        text.append_text(safe(pool.name, 100))
        text.stylize("bold")
        if pool.description:
            text.append(" · ", style="bright_black")
            text.append_text(safe(pool.description, 200))
        text.append("\n")
        text.append_text(meter(pool, 24))
        text.append(f"   {pool.leased} of {pool.capacity} slots leased · ")
        queued = pool.queued
        text.append(f"{queued} queued", style="bold red" if queued else "")
        text.append(f" · {pool.healthy_workers} of {pool.workers} workers healthy")
        if pool.draining_workers:
            text.append(f" · {pool.draining_workers} draining", style="yellow")
        made = pool.provisioner
        if made is not None:
            # The pool's provisioner: how many it made, what it does, what happened last.
            text.append("\nDynamic workers  ", style="bright_black")
            text.append(f"{made.workers} of at most {made.max}")
            if made.min:
                text.append(f", {made.min} kept warm")
            text.append(" · ")
            text.append(made.state, style={"ready": "green", "failing": "bold red"}.get(
                made.state, "yellow"))
            if made.note:
                text.append(" · ")
                text.append_text(safe(made.note, 300))
                text.append(f" ({ago(made.note_at)})", style="bright_black")
        text.append("\nLast 10 minutes  ", style="bright_black")
        text.append_text(sparkline(fleet.usage_history.get(pool.name, ()), time.time(),
                                   width=60))
        headline.update(text)
        members = {n: fleet.workers[n] for n in pool.members if n in fleet.workers}
        self.members_table.sync(members)
        busy = sum(1 for w in members.values() if w.leased)
        self.query_one("#members-title", Static).update(Text.assemble(
            ("Members", "bold"), (f"  {len(members)} · {busy} running steps", "bright_black")))

    @work(exclusive=True, group="pool-detail", exit_on_error=False)
    async def load_detail(self) -> None:
        name = self.pools_table.selected_key
        if not name:
            return
        try:
            detail: PoolDetail = view(await self.wapp.api.get(
                f"/api/pools/{segment(name)}", params={"history_s": "0"}))
        except ApiError as exc:
            self.query_one("#leases-title", Static).update(Text(str(exc), style="yellow"))
            return
        if name != self.pools_table.selected_key:
            return
        self._show_work(detail)

    def _show_work(self, detail: PoolDetail) -> None:
        leases = detail.leases
        self.query_one("#leases-title", Static).update(Text.assemble(
            ("Running here", "bold"), (f"  {len(leases)} leases", "bright_black")))
        self.query_one("#leases-table", LiveTable).sync({
            f"{lease.run_id}:{lease.position}:{lease.worker}": [
                safe(f"{lease.run_id} {lease.runbook}", 100),
                safe(f"{lease.position}. {lease.step_name}", 100), safe(lease.worker, 60),
                Text(ago(lease.since), style="bright_black"),
                safe((f"orphan: {lease.orphan}; " if lease.orphan else "")
                     + lease.worker_reason + (f" (taken through {lease.pool})"
                                       if lease.pool != detail.name else ""), 300)]
            for lease in leases})
        queue = detail.queue
        self.query_one("#queue-title", Static).update(Text.assemble(
            ("Queued", "bold"), (f"  {len(queue)} waiting for a slot, first come first "
                                 "served", "bright_black")))
        self.query_one("#queue-table", LiveTable).sync({
            f"{index}:{item.run_id}:{item.position}": [
                Text(str(item.run_id)), safe(f"{item.position}. {item.step_name}", 100),
                safe(item.worker or "any worker", 60),
                Text(ago(item.since), style="yellow")]
            for index, item in enumerate(queue)})

    # -------------------------------------------------------- keys

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        if event.data_table.id == "pools-table":
            self._show_pool()
            # Nothing running or queued shown until the pool's own answer comes.
            loading: PoolDetail = view({"name": event.row_key, "leases": [], "queue": []})
            self._show_work(loading)
            self.load_detail()

    def select_pool(self, name: str) -> None:
        self.set_filter("")
        if self.pools_table.has_row(name):
            self.pools_table.move_cursor(row=self.pools_table.get_row_index(name))
            self._show_pool()
            self.load_detail()

    def selected_worker(self) -> Worker | None:
        if self.focused is not self.members_table:
            return None
        key = self.members_table.selected_key
        return self.wapp.fleet.workers.get(key) if key else None

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        if self.focused is self.members_table:
            from console.screens.worker_detail import WorkerDetailScreen

            worker = self.selected_worker()
            if worker:
                self.app.push_screen(WorkerDetailScreen(worker.name))
        elif self.focused is self.pools_table and self.members_table.row_count:
            self.members_table.focus()

    def action_new_pool(self) -> None:
        from console.screens.modals import NewPoolDialog

        def create(values: dict[str, str] | None) -> None:
            if values:
                self.wapp.call_api("New pool", "POST", "/api/pools", values,
                                   done=f"Created pool {values['name']}.")

        self.app.push_screen(NewPoolDialog(), create)
