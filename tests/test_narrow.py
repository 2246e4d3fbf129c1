"""The console on a small terminal (80 by 24: a phone's SSH client, a small split): columns
narrow, then give way by their declared order and are named in a hint; numbers are never
cut; the top bar says less; a wider terminal shows more, never less."""

from __future__ import annotations

from fixed_fleet import FixedFleetApp

from console.widgets.live_table import Column, LiveTable, fit


def test_columns_narrow_then_give_way_by_their_order():
    columns = [Column("name", "Name", 26, 0, 20), Column("status", "Status", 15),
               Column("pools", "Pools", 30, 2, 16), Column("latency", "Latency", 9, 1),
               Column("reason", "Reason", None, 0, 24)]
    # Wide: every column at its width, the rest to the fill.
    assert fit(columns, 150) == [26, 15, 30, 9, 150 - 26 - 15 - 30 - 9 - 10]
    # Narrower: Pools narrows (the name grows back first) before anything gives way.
    assert fit(columns, 100) == [26, 15, 16, 9, 24]
    # Narrower still: Pools (the highest `drop`) goes first, then Latency.
    assert fit(columns, 90) == [26, 15, None, 9, 32]
    assert fit(columns, 70) == [25, 15, None, None, 24]
    # What cannot give way stays at its narrowest and is cut at the edge.
    assert fit(columns, 40) == [20, 15, None, None, 24]
    # Never less when wider.
    for width in range(40, 200):
        shown = [w is not None for w in fit(columns, width)]
        wider = [w is not None for w in fit(columns, width + 1)]
        assert all(b or not a for a, b in zip(shown, wider, strict=True)), width


async def test_the_workers_view_at_80_names_what_it_leaves_out():
    app = FixedFleetApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("w")
        await pilot.pause()
        table = app.screen.query_one("#workers-table", LiveTable)
        assert table.hidden_columns == ["Pools", "Latency", "Load", "Disk free", "Engine",
                                        "Checked"]
        lines = [strip.text for strip in
                 (table.render_line(y) for y in range(table.size.height))]
        assert lines[0].split() == ["Name", "Status", "Leased", "Reason"]
        # Below the last row, where the eye goes next.
        assert lines[len(app.fleet.workers) + 1].strip() == (
            "hidden at this width: Pools, Latency, Load, Disk free, Engine, Checked")
        # The numbers whole, the reason of an unavailable worker begun.
        row = next(line for line in lines if "p-db-omaha-worker-01" in line)
        assert " 4/4 " in row
        row = next(line for line in lines if "p-db-omaha-worker-02" in line)
        assert "HOST KEY CHANGED" in row
        # The top bar: the counts by symbol, who you are without where.
        counts = str(app.screen.query_one("#fleet-counts").render())
        assert counts.split() == ["●", "4", "▲", "1", "✖", "1", "○", "1", "?", "1", "⊘", "1"]
        assert str(app.screen.query_one("#connection").render()).endswith(
            "alice (approver, operator)")

        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        assert table.hidden_columns == []
        assert "healthy 4" in str(app.screen.query_one("#fleet-counts").render())
        assert "alice@ops-1" in str(app.screen.query_one("#connection").render())
