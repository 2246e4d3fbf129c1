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


async def test_typing_a_name_in_a_table_jumps_to_it():
    """Type-ahead in every table: the first row (as shown) whose name starts with what was
    typed; a view's own keys keep their meaning unless a name is under way or `'` began it."""
    from fixed_fleet import DB, DEV

    app = FixedFleetApp()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("w")
        await pilot.pause()
        table = app.screen.query_one("#workers-table", LiveTable)
        table.focus()
        # `p` would open the Pools view, `d` drain: after `'` they are a name.
        await pilot.press("apostrophe", *"p-db-omaha-worker-02")
        assert (app.screen.VIEW_NAME, table.selected_key) == ("Workers",
                                                               "p-db-omaha-worker-02")
        lines = [strip.text for strip in
                 (table.render_line(y) for y in range(table.size.height))]
        assert "go to: p-db-omaha-worker-02" in "\n".join(lines)
        await pilot.press("backspace", "1")
        assert table.selected_key == "p-db-omaha-worker-01"
        await pilot.press("escape")  # the name dropped, the view kept
        assert app.screen.VIEW_NAME == "Workers" and table.typed is None
        # `l` (the launch finder, from anywhere) is a letter of the name too.
        await pilot.press("apostrophe", *"built")
        assert (app.screen.VIEW_NAME, table.selected_key) == ("Workers", "built-in-worker")
        await pilot.press("escape")
        # A letter no key of the view uses starts a name by itself (`m`, not `r`: Run).
        await pilot.press("b")
        books = app.screen.query_one("#runbooks-table", LiveTable)
        books.focus()
        await pilot.press("end", "m")
        assert books.selected_key == "Migrate database"
        await pilot.pause(1.6)  # past the pause that ends a name
        await pilot.press("r")  # Run: the launch dialog
        assert type(app.screen).__name__ == "LaunchDialog"
        # Runs by their number.
        await pilot.press("escape", "u")
        runs = app.screen.query_one("#runs-table", LiveTable)
        runs.focus()
        await pilot.press("4", "8")
        assert runs.selected_key == "48"
        # Findings by the worker or pool they are about; Pools by name.
        await pilot.press("escape", "a")
        findings = app.screen.query_one("#findings-table", LiveTable)
        findings.focus()
        await pilot.press("apostrophe", *"omaha p")
        assert findings._data[findings.selected_key].name == DB
        await pilot.press("escape", "p")
        pools = app.screen.query_one("#pools-table", LiveTable)
        pools.focus()
        await pilot.press("apostrophe", *"omaha d")
        assert pools.selected_key == DEV
