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


def test_run_view_of_a_long_log_says_what_it_has_not_loaded(snap_compare):
    # Opened at its end: the line above says how many earlier lines are a scroll away.
    assert snap_compare(FixedFleetApp(), run_before=_open_long_run, terminal_size=SIZE)


def test_run_view_of_a_long_log_paged_to_its_first_line(snap_compare):
    async def home(pilot):  # type: ignore[no-untyped-def]
        await _open_long_run(pilot, home=True)

    assert snap_compare(FixedFleetApp(), run_before=home, terminal_size=SIZE)


def test_approvals_view(snap_compare):
    # The runs alice may approve (not her own), and the top bar counting them.
    assert snap_compare(FixedFleetApp(), press=["colon", *"approvals", "enter"],
                        terminal_size=SIZE)


def test_people_view(snap_compare):
    assert snap_compare(FixedFleetApp(), press=["colon", *"people", "enter", "down"],
                        terminal_size=SIZE)


def test_dashboard_at_80_by_24(snap_compare):
    # A phone's SSH client, a small split: every tile keeps its label, numbers whole.
    assert snap_compare(FixedFleetApp(), terminal_size=(80, 24))
