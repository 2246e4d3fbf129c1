"""Values as people read them, the same in the console and on the command line.

Plain strings only (the console adds colour around them), and nothing imported that a
command would wait for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wire.people import Person, Whoami

# A status and its symbol: worker health, then run and step states.
SYMBOLS = {
    "healthy": "●",
    "warning": "▲",
    "unhealthy": "✖",
    "unavailable": "○",
    "unknown": "?",
    "disabled": "⊘",
    "queued": "…",
    "running": "▶",
    "waiting": "⏸",
    "succeeded": "✔",
    "failed": "✖",
    "cancelled": "⊘",
    "interrupted": "⚡",
    "skipped": "↷",
    "lost": "?",
}


def plural(count: int, noun: str) -> str:
    """"1 finding", "3 findings"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def started(iso: str | None, now: datetime | None = None) -> str:
    """When something started: the time today, with the date on other days."""
    if not iso:
        return "-"
    at = datetime.fromisoformat(iso).astimezone()
    today = (now or datetime.now(at.tzinfo)).astimezone().date()
    return at.strftime("%H:%M:%S" if at.date() == today else "%Y-%m-%d %H:%M")


def status(value: str) -> str:
    """`● healthy`, `✖ failed`: a status with its symbol."""
    return f"{SYMBOLS.get(value, '?')} {value}"


def _seconds_since(iso: str, now: datetime | None) -> float:
    return max(0.0, ((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds())


def ago(iso: str | None, now: datetime | None = None) -> str:
    """How long ago, in whole units counted down (90 s is "1m ago", never "2m ago")."""
    if not iso:
        return "never"
    seconds = _seconds_since(iso, now)
    if seconds < 60:
        return f"{seconds // 1:.0f}s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h ago"
    return f"{seconds // 86400:.0f}d ago"


def due(iso: str | None, zone: str = "UTC", now: datetime | None = None) -> str:
    """A time to come, in the zone it was set in, and how soon: "Mon 12-07 03:00 CET
    (in 2d 3h)"."""
    if not iso:
        return "-"
    from zoneinfo import ZoneInfo

    at = datetime.fromisoformat(iso)
    seconds = max(0.0, (at - (now or datetime.now(UTC))).total_seconds())
    if seconds < 3600:
        soon = f"{seconds // 60:.0f}m"
    elif seconds < 86400:
        soon = f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"
    else:
        soon = f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:.0f}h"
    try:
        local = at.astimezone(ZoneInfo(zone))
    except (KeyError, ValueError):
        local = at
    return f"{local:%a %m-%d %H:%M %Z} (in {soon})"


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str:
    """How long something ran (or has run so far): 4.2s, 3m 07s, 1h 05m."""
    if not start:
        return "-"
    stop = datetime.fromisoformat(end) if end else (now or datetime.now(UTC))
    seconds = max(0.0, (stop - datetime.fromisoformat(start)).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60 // 1:02.0f}s"
    return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"


def latency(value: float | None) -> str:
    """A round trip in milliseconds: one decimal under 10 ms."""
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def size(value: float | None) -> str:
    """Bytes as people read them."""
    if value is None:
        return "-"
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def megabytes(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def least_free_disk(free_mb: Iterable[float]) -> float | None:
    """The free megabytes of a worker's fullest disk (its disks' free space), if measured."""
    return min(free_mb, default=None)


def disk_free(free_mb: Iterable[float]) -> str:
    mb = least_free_disk(free_mb)
    return "-" if mb is None else megabytes(mb)


def load(values: Sequence[float] | None, cpus: int | None) -> str:
    """The 1-minute load over the CPU count: `0.42/4`."""
    if not values:
        return "-"
    return f"{values[0]:.2f}" + (f"/{cpus}" if cpus else "")


def overloaded(values: Sequence[float] | None, cpus: int | None) -> bool:
    """The 5-minute load above the CPU count."""
    return bool(values and cpus and values[1] > cpus)


BUILTIN = " (built-in)"
DYNAMIC = " (dynamic)"  # made by its pool's provisioner, destroyed by it when idle


def worker_label(name: str, builtin: bool, dynamic: bool = False) -> str:
    return name + (BUILTIN if builtin else "") + (DYNAMIC if dynamic else "")


def engine(container_engine: str | None) -> str:
    """A worker's container engine as the check found it ("-": not read yet)."""
    if container_engine is None:
        return "-"
    return container_engine or "none"


def grants(person: Person | Whoami) -> str:
    """A person's roles in a few words: "admin", "operator on Development, Test, viewer"."""
    return ", ".join(g.role + (f" on {', '.join(g.environments)}" if g.environments else "")
                     for g in person.grants) or "no role"
