"""Snapshots of every view, at 80 by 24 (a phone's SSH client, a small split) and at 160 by
45: a change in what an operator sees shows up in review."""

from __future__ import annotations

from datetime import datetime

import pytest
from fixed_fleet import FIXED_NOW, FixedFleetApp

SIZE = (160, 45)
# Each view at both: on the small one, columns give way by their order and are named.
SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])


@pytest.fixture
def frozen_clock(monkeypatch):
    """Now is fixed_fleet.FIXED_NOW for what says how soon or how long ago."""
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return FIXED_NOW.astimezone(tz) if tz else FIXED_NOW.replace(tzinfo=None)

    monkeypatch.setattr("console.display.datetime", Frozen)


def view(*words: str) -> list[str]:
    """The keys of `:WORDS` then enter."""
    return ["colon", *" ".join(words), "enter"]


@SIZES
def test_dashboard(snap_compare, size):
    assert snap_compare(FixedFleetApp(), terminal_size=size)


@SIZES
def test_workers_view(snap_compare, size):
    assert snap_compare(FixedFleetApp(), press=["w"], terminal_size=size)


def test_workers_view_filtered(snap_compare):
    assert snap_compare(FixedFleetApp(), press=["w", "slash", *"omaha", "enter"],
                        terminal_size=SIZE)


@SIZES
def test_pools_view(snap_compare, size):
    # The busiest pool opened: its members, the steps on them, its queue.
    assert snap_compare(FixedFleetApp(), press=["p", "end"], terminal_size=size)


@SIZES
def test_runbooks_view(snap_compare, size):
    assert snap_compare(FixedFleetApp(), press=["b"], terminal_size=size)


@SIZES
def test_runs_view(snap_compare, size):
    assert snap_compare(FixedFleetApp(), press=["u"], terminal_size=size)


@SIZES
def test_advisor_view(snap_compare, size):
    assert snap_compare(FixedFleetApp(), press=["a"], terminal_size=size)


@SIZES
def test_schedules_view(snap_compare, size, frozen_clock):
    assert snap_compare(FixedFleetApp(), press=view("schedules"), terminal_size=size)


@SIZES
def test_nodes_view(snap_compare, size, frozen_clock):
    assert snap_compare(FixedFleetApp(), press=view("nodes"), terminal_size=size)


@SIZES
def test_worker_details(snap_compare, size):
    async def open_details(pilot):
        await pilot.press("w")
        await pilot.pause()
        pilot.app.screen.query_one("#workers-table").focus()
        await pilot.press("down", "enter")
        for _ in range(100):  # until the details have their history, however slow the run
            if getattr(pilot.app.screen, "history", None):
                break
            await pilot.pause(0.05)
        await pilot.pause()

    assert snap_compare(FixedFleetApp(), run_before=open_details, terminal_size=size)


def test_help(snap_compare):
    assert snap_compare(FixedFleetApp(), press=["w", "question_mark"], terminal_size=SIZE)


async def _open_long_run(pilot, home: bool = False):  # type: ignore[no-untyped-def]
    from console.screens.run import RunScreen

    screen = RunScreen(7)
    pilot.app.push_screen(screen)
    for _ in range(200):  # until its last page is shown, however slow the run
        if screen.is_mounted and screen.log_view.last_seq >= 120_000:
            break
        await pilot.pause(0.05)
    await pilot.press("t")  # no clock times: they depend on the time zone
    if home:
        await pilot.press("home")
        for _ in range(200):
            if screen.log_view.first_seq == 1:
                break
            await pilot.pause(0.05)
    await pilot.pause(0.3)


@SIZES
def test_run_view_of_a_long_log_says_what_it_has_not_loaded(snap_compare, size):
    # Opened at its end: the line above says how many earlier lines are a scroll away.
    assert snap_compare(FixedFleetApp(), run_before=_open_long_run, terminal_size=size)


def test_run_view_of_a_long_log_paged_to_its_first_line(snap_compare):
    async def home(pilot):  # type: ignore[no-untyped-def]
        await _open_long_run(pilot, home=True)

    assert snap_compare(FixedFleetApp(), run_before=home, terminal_size=SIZE)


@SIZES
def test_approvals_view(snap_compare, size):
    # The runs alice may approve (not her own), and the top bar counting them.
    assert snap_compare(FixedFleetApp(), press=view("approvals"), terminal_size=size)


@SIZES
def test_people_view(snap_compare, size):
    assert snap_compare(FixedFleetApp(), press=[*view("people"), "down"], terminal_size=size)


@SIZES
def test_launch_dialog(snap_compare, size):
    # At 80 by 24 it fills the screen, its modes stacked, its buttons on it.
    assert snap_compare(FixedFleetApp(), press=["b", "r"], terminal_size=size)
