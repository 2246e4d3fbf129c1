"""Snapshots of the main views: a change in what an operator sees shows up in review."""

from __future__ import annotations

from fixed_fleet import FixedFleetApp

SIZE = (140, 36)


def test_dashboard(snap_compare):
    assert snap_compare(FixedFleetApp(), terminal_size=SIZE)


def test_workers_view(snap_compare):
    assert snap_compare(FixedFleetApp(), press=["w"], terminal_size=SIZE)


def test_workers_view_filtered(snap_compare):
    assert snap_compare(FixedFleetApp(), press=["w", "slash", *"omaha", "enter"],
                        terminal_size=SIZE)


def test_pools_view(snap_compare):
    # The busiest pool opened: its members, the steps on them, its queue.
    assert snap_compare(FixedFleetApp(), press=["p", "end"], terminal_size=SIZE)


def test_worker_details(snap_compare):
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

    assert snap_compare(FixedFleetApp(), run_before=open_details, terminal_size=SIZE)


def test_help(snap_compare):
    assert snap_compare(FixedFleetApp(), press=["w", "question_mark"], terminal_size=SIZE)
