"""The verbs on a selected worker (check, trust its key, drain, disable), declared once
with their keys and reused by every view that offers them: Workers, Pools (a member)
and the worker details."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding

from console.state import plain
from wire.paths import segment

if TYPE_CHECKING:
    from console.app import WorkdeckApp
    from wire.workers import Worker

WORKER_VERBS = [
    Binding("c", "check", "Check", id="check"),
    Binding("t", "trust", "Trust key", id="trust"),
    Binding("d", "toggle_drain", "Drain/undrain", id="toggle_drain"),
    Binding("e", "toggle_enabled", "Disable/enable", id="toggle_enabled"),
]


class WorkerVerbs:
    """The verbs on a selected worker, shared by the Workers view and the worker details."""

    if TYPE_CHECKING:
        @property
        def wapp(self) -> WorkdeckApp: ...  # the app of the screen this is mixed into

    def selected_worker(self) -> Worker | None:
        """The worker the verbs act on; each view says where its selection is."""
        return None

    def action_check(self) -> None:
        worker = self.selected_worker()
        if worker:
            self.wapp.check_workers([worker.name])

    def action_trust(self) -> None:
        from console.screens.modals import TrustDialog

        worker = self.selected_worker()
        if not worker:
            return
        if worker.builtin:
            self.wapp.notify("The built-in worker runs locally and has no host key.")
            return
        if not worker.presented_host_key:
            self.wapp.notify(plain(f"{worker.name} has not presented an untrusted host key."),
                            markup=False)
            return

        def decided(trust: bool | None) -> None:
            if trust:
                self.wapp.call_api(
                    "Trust host key", "POST", f"/api/workers/{segment(worker.name)}/trust",
                    {"fingerprint": worker.presented_host_key},
                    done=f"Trusted {worker.presented_host_key} for {worker.name}.")

        self.wapp.push_screen(TrustDialog(worker), decided)

    def action_toggle_enabled(self) -> None:
        from console.screens.modals import ConfirmDialog

        worker = self.selected_worker()
        if not worker:
            return
        name = worker.name
        path = f"/api/workers/{segment(name)}"
        if not worker.enabled:
            self.wapp.call_api("Enable worker", "POST", f"{path}/enable",
                              done=f"Enabled {name}.")
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self.wapp.call_api("Disable worker", "POST",
                                  f"{path}/disable", done=f"Disabled {name}.")

        running = worker.leased
        body = ("It will take no new work and will not be health-checked until enabled "
                "again.")
        if running:
            body = (f"{running} step{'s are' if running != 1 else ' is'} running on it now "
                    f"and will go on to the end there. {body}")
            if not worker.draining:
                body += " To let it finish first and then stand idle, drain it instead (d)."
        self.wapp.push_screen(ConfirmDialog(f"Disable {name}?", body, confirm="Disable"),
                             decided)

    def action_toggle_drain(self) -> None:
        worker = self.selected_worker()
        if not worker:
            return
        name = worker.name
        path = f"/api/workers/{segment(name)}"
        if worker.draining:
            self.wapp.call_api("Undrain worker", "POST",
                              f"{path}/undrain", done=f"{name} takes new steps again.")
            return
        from console.screens.modals import ConfirmDialog

        running = worker.leased
        then = (f"its {running} running step{'s' if running != 1 else ''} finish there"
                if running else "it is idle")

        def answered(yes: bool | None) -> None:
            if yes:
                self.wapp.call_api(
                    "Drain worker", "POST", f"{path}/drain",
                    done=f"Draining {name}: {then}; no new steps start there.")

        # A drain takes a worker out of every pool it serves: asked, never one stray key.
        self.wapp.push_screen(ConfirmDialog(
            f"Drain {name}?", f"{then.capitalize()}, and no new step starts there until "
            "it is undrained (d again).", confirm="Drain"), answered)
