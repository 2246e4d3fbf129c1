"""How the command line prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from backend.sanitize import clean_line, clean_text


def say(text: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """Print a message that may hold text from the server or a worker: cleaned of escape
    sequences and control characters first, whatever they are."""
    click.echo(clean_text(str(text)), err=err, nl=nl)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


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


def ago(iso: str | None) -> str:
    if not iso:
        return "never"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 60:
        return f"{max(seconds, 0):.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def size(value: float | None) -> str:
    """Bytes as people read them."""
    if value is None:
        return "-"
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def load(worker: dict[str, Any]) -> str:
    facts = worker.get("facts") or {}
    values = facts.get("load")
    return " ".join(f"{v:.2f}" for v in values) if values else "-"


def disk_free(worker: dict[str, Any]) -> str:
    disks = (worker.get("facts") or {}).get("disks") or []
    if not disks:
        return "-"
    least = min(disks, key=lambda d: d["free_mb"])
    mb = least["free_mb"]
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def worker_label(worker: dict[str, Any]) -> str:
    return f"{worker['name']} (built-in)" if worker.get("builtin") else worker["name"]
