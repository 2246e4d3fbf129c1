"""The console's copy of the fleet, fed by the server's push stream, and how it is shown."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from backend.sanitize import clean_line

# Worst first: the order in which problems are listed.
SEVERITY = {"unhealthy": 0, "unavailable": 1, "warning": 2, "unknown": 3, "healthy": 4,
            "disabled": 5}
STATUS_STYLE = {
    "healthy": ("●", "green"),
    "warning": ("▲", "yellow"),
    "unhealthy": ("✖", "bold red"),
    "unavailable": ("○", "red"),
    "unknown": ("?", "bright_black"),
    "disabled": ("⊘", "bright_black"),
}
STATUS_ORDER = ("healthy", "warning", "unhealthy", "unavailable", "unknown", "disabled")


@dataclass
class Fleet:
    """Workers and pools by name, as the server last said."""

    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # keyed by str(id)
    runbooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    environments: list[str] = field(default_factory=list)

    def load(self, snapshot: dict[str, Any]) -> None:
        self.workers = {w["name"]: w for w in snapshot.get("workers", [])}
        self.pools = {p["name"]: p for p in snapshot.get("pools", [])}
        self.server = snapshot.get("server", {})
        self.runs = {str(r["id"]): r for r in snapshot.get("runs", [])}
        self.runbooks = {b["name"]: b for b in snapshot.get("runbooks", [])}
        self.environments = list(snapshot.get("environments", []))

    def apply(self, changes: list[dict[str, Any]]) -> set[str]:
        """Apply a batch of events; return the names of the workers and pools touched."""
        touched: set[str] = set()
        for change in changes:
            kind, key, data = change["type"], change["key"], change.get("data")
            touched.add(key)
            if kind == "worker":
                self.workers[key] = data
            elif kind == "worker.removed":
                self.workers.pop(key, None)
            elif kind == "pool":
                self.pools[key] = data
            elif kind == "pool.removed":
                self.pools.pop(key, None)
            elif kind == "run":
                self.runs[key] = data
            elif kind == "runbook":
                self.runbooks[key] = data
            elif kind == "runbook.removed":
                self.runbooks.pop(key, None)
            elif kind == "environment" and key not in self.environments:
                self.environments = sorted([*self.environments, key])
        return touched

    def counts(self) -> Counter[str]:
        return Counter(w["status"] for w in self.workers.values())

    def pool_members(self, pool: str) -> list[dict[str, Any]]:
        return [w for w in self.workers.values() if pool in w["pools"]]

    def pool_names(self) -> list[str]:
        names = set(self.pools)
        for worker in self.workers.values():
            names.update(worker["pools"])
        return sorted(names, key=str.lower)


def status_text(status: str) -> Text:
    glyph, style = STATUS_STYLE.get(status, ("?", ""))
    return Text(f"{glyph} {status}", style=style)


def safe(value: Any, limit: int = 200) -> Text:
    """Text from the server or a worker, never parsed as markup, cleaned of escapes."""
    return Text(clean_line("" if value is None else str(value), limit))


def ago(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "never"
    now = now or datetime.now(UTC)
    seconds = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h ago"
    return f"{seconds // 86400:.0f}d ago"


def latency(value: float | None) -> Text:
    if value is None:
        return Text("-", style="bright_black")
    style = "red" if value > 1000 else "yellow" if value > 250 else ""
    return Text(f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms", style=style)


def load_text(worker: dict[str, Any]) -> Text:
    facts = worker.get("facts") or {}
    load, cpus = facts.get("load"), facts.get("cpus")
    if not load:
        return Text("-", style="bright_black")
    style = "yellow" if cpus and load[1] > cpus else ""
    return Text(f"{load[0]:.2f}" + (f"/{cpus}" if cpus else ""), style=style)


def disk_text(worker: dict[str, Any]) -> Text:
    disks = (worker.get("facts") or {}).get("disks") or []
    if not disks:
        return Text("-", style="bright_black")
    least = min(disks, key=lambda d: d["free_mb"])
    mb = least["free_mb"]
    return Text(f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB",
                style="yellow" if worker["status"] == "warning" and "free on" in
                worker.get("reason", "") else "")


def worker_name_text(worker: dict[str, Any]) -> Text:
    text = safe(worker["name"], 100)
    if worker.get("builtin"):
        text.append(" (built-in)", style="italic bright_black")
    return text


def matches(filter_text: str, *fields: Any) -> bool:
    """Every word of the filter appears in one of the fields (case-insensitive)."""
    if not filter_text:
        return True
    haystack = " ".join(str(f) for f in fields).lower()
    return all(word in haystack for word in filter_text.lower().split())


RUN_STYLE = {
    "queued": ("…", "bright_black"),
    "running": ("▶", "cyan"),
    "waiting": ("⏸", "bold yellow"),
    "succeeded": ("✔", "green"),
    "failed": ("✖", "bold red"),
    "cancelled": ("⊘", "bright_black"),
    "interrupted": ("⚡", "red"),
    "skipped": ("↷", "bright_black"),
    "lost": ("?", "bold red"),
}


def run_status_text(status: str) -> Text:
    glyph, style = RUN_STYLE.get(status, ("?", ""))
    return Text(f"{glyph} {status}", style=style)


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str:
    if not start:
        return "-"
    stop = datetime.fromisoformat(end) if end else (now or datetime.now(UTC))
    seconds = max(0.0, (stop - datetime.fromisoformat(start)).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"
