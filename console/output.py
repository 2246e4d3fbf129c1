"""How the command line prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from wire.text import clean_line, clean_text


def say(text: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """Print a message that may hold text from the server or a worker: cleaned of escape
    sequences and control characters first, whatever they are."""
    click.echo(clean_text(str(text)), err=err, nl=nl)


def print_json(data: Any) -> None:
    from console.typed import jsonable

    click.echo(json.dumps(jsonable(data), indent=2, sort_keys=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    # Every cell may hold text from a worker: it is cleaned before it reaches a terminal.
    cells = [[clean_line("" if c is None else str(c), 200) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    line = "  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()
    click.echo(click.style(line, bold=True) if sys.stdout.isatty() else line)
    for row in cells:
        click.echo("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
