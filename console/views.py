"""The console's views, declared once: the app's modes, their keys (and so the footer and
`?` help), the `:` commands that open them, and the command palette all read this table.

Screens are named, not imported, so that the command line loads no screen it does not
show.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.binding import Binding
from textual.screen import Screen


@dataclass(frozen=True)
class View:
    mode: str  # the app's mode, and the `:` command's full word
    title: str
    key: str | None  # the key that opens it from anywhere (None: `:` and the palette)
    about: str  # what it shows, in the palette
    words: tuple[str, ...]  # more `:` commands that open it
    screen: str  # "module:Class"

    def screen_class(self) -> type[Screen[Any]]:
        module, _, name = self.screen.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


VIEWS = (
    View("dashboard", "Dashboard", "h", "Fleet health at a glance", ("d", "dash"),
         "console.screens.dashboard:DashboardScreen"),
    View("workers", "Workers", "w", "Every worker, live", ("w", "worker"),
         "console.screens.workers:WorkersScreen"),
    View("pools", "Pools", "p", "Worker pools and their members", ("p", "pool"),
         "console.screens.pools:PoolsScreen"),
    View("runbooks", "Runbooks", "b", "Launch a runbook", ("b", "rb", "runbook"),
         "console.screens.runbooks:RunbooksScreen"),
    View("runs", "Runs", "u", "Run history, live", ("u",),
         "console.screens.runs:RunsScreen"),
    View("advisor", "Advisor", "a", "What goes against the worker recommendations",
         ("a", "advice"), "console.screens.advisor:AdvisorScreen"),
    View("approvals", "Approvals", None, "Runs waiting for your approval",
         ("approve", "approval"), "console.screens.approvals:ApprovalsScreen"),
    View("people", "People", None, "People, their roles and their tokens",
         ("users", "user"), "console.screens.people:PeopleScreen"),
    View("schedules", "Schedules", None, "Runbooks launched on a schedule, and when next",
         ("schedule", "cron"), "console.screens.schedules:SchedulesScreen"),
    View("nodes", "Nodes", None, "The servers using this store, and their heartbeats",
         ("node", "servers"), "console.screens.nodes:NodesScreen"),
)
FIRST = VIEWS[0].mode
# A terminal narrower than this (80 by 24: a phone's SSH client, a small split) has every
# view say less rather than cut: the app's "-narrow" breakpoint, the top bar, the tiles.
NARROW_BELOW = 100


def by_word() -> dict[str, str]:
    """Every `:` command word that opens a view, to that view's mode."""
    return {word: v.mode for v in VIEWS for word in (v.mode, *v.words)}


def bindings() -> list[Binding]:
    """The keys that open each view from anywhere (listed in `?` help, not the footer)."""
    return [Binding(v.key, f"view({v.mode!r})", v.title, show=False, id=v.mode)
            for v in VIEWS if v.key]


def modes() -> dict[str, str | Callable[[], Screen[Any]]]:
    return {v.mode: v.screen_class() for v in VIEWS}


def command_help() -> str:
    """The `:` commands that open views, as help and the unknown-command answer say them."""
    return ", ".join(f":{v.mode}" + (" [filter]" if getattr(v.screen_class(), "FILTERABLE", True)
                                      else "") for v in VIEWS)
