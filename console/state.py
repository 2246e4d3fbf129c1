"""The console's copy of the fleet, fed by the server's push stream, and how it is shown."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text

from console import display
from console.typed import view
from wire.constants import HISTORY_S
from wire.text import clean_line

if TYPE_CHECKING:  # read as these models, never imported at run time (console/typed.py)
    from wire.events import AdviceCounts, Change, Snapshot, Usage
    from wire.people import Whoami
    from wire.pools import HistoryPoint, Pool
    from wire.runbook import RunbookSummary
    from wire.runs import RunSummary
    from wire.server import ServerStatus
    from wire.workers import Worker

# Worst first: the order in which problems are listed.
SEVERITY = {"unhealthy": 0, "unavailable": 1, "warning": 2, "unknown": 3, "healthy": 4,
            "disabled": 5}
STATUS_STYLE = {  # a worker status's colour (its symbol: console.display)
    "healthy": "green",
    "warning": "yellow",
    "unhealthy": "bold red",
    "unavailable": "red",
    "unknown": "bright_black",
    "disabled": "bright_black",
}

STATUS_ORDER = ("healthy", "warning", "unhealthy", "unavailable", "unknown", "disabled")


@dataclass
class Fleet:
    """Workers, pools, runs and runbooks by name, as the push stream last said (its events
    are declared in wire/events.py), each read as its wire model."""

    workers: dict[str, Worker] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    server: ServerStatus | None = None
    runs: dict[str, RunSummary] = field(default_factory=dict)  # keyed by str(id)
    runbooks: dict[str, RunbookSummary] = field(default_factory=dict)
    environments: list[str] = field(default_factory=list)
    four_eyes: set[str] = field(default_factory=set)  # environments that need it
    you: Whoami | None = None  # who the server takes this console for (None: not known)
    people_version: int = 0  # goes up whenever people, grants or tokens changed
    # Per pool, [unix time, leased, capacity, queued] over the last HISTORY_S, oldest first.
    usage_history: dict[str, deque[HistoryPoint]] = field(default_factory=dict)
    advice: AdviceCounts | None = None  # None until the advisor has counted once
    # Goes up with every change to a worker: views redo per-worker work only then.
    worker_version: int = 0
    _counts: Counter[str] | None = None
    _counted_version: int = -1

    def load(self, data: dict[str, Any]) -> None:
        """The stream's first event."""
        snapshot: Snapshot = view(data)
        columns = data["worker_columns"]
        name = columns.index("name") if columns else 0
        # Rows zipped with their columns: a dict each, read as a Worker.
        self.workers = {row[name]: view(dict(zip(columns, row, strict=True)))
                        for row in data["worker_rows"]}
        self.worker_version += 1
        self.pools = {p.name: p for p in snapshot.pools}
        self.usage_history = {name: deque(points) for name, points
                              in snapshot.usage_history.items()}
        self.advice = snapshot.advice
        self.server = snapshot.server
        self.runs = {str(r.id): r for r in snapshot.runs}
        self.runbooks = {b.name: b for b in snapshot.runbooks}
        self.environments = list(snapshot.environments)
        self.four_eyes = set(snapshot.four_eyes)
        self.you = snapshot.you

    def apply(self, data: list[dict[str, Any]]) -> set[str]:
        """Apply a batch of changes; return the names of the objects touched."""
        touched: set[str] = set()
        changes: list[Change] = view(data)
        for change in changes:
            key = change.key
            touched.add(key)
            if change.type == "worker":
                self.workers[key] = change.data
                self.worker_version += 1
            elif change.type == "worker.removed":
                self.workers.pop(key, None)
                self.worker_version += 1
            elif change.type == "pool":
                self.pools[key] = change.data
            elif change.type == "usage":
                pool = self.pools.get(key)
                if pool is not None:  # its figures; the rest of the pool stays
                    shown, figures = pool.model_dump(), change.data.model_dump()
                    self.pools[key] = view({**shown, **{k: v for k, v in figures.items()
                                                        if k in shown}})
                self._remember_usage(key, change.data)
            elif change.type == "advice":
                self.advice = change.data
            elif change.type == "run":
                self.runs[key] = change.data
            elif change.type == "runbook":
                self.runbooks[key] = change.data
            elif change.type == "runbook.removed":
                self.runbooks.pop(key, None)
            elif change.type == "server":
                self.server = change.data
            elif change.type == "people":
                self.people_version += 1
            elif change.type == "environment":
                if key not in self.environments:
                    self.environments = sorted([*self.environments, key])
                if change.data.four_eyes:
                    self.four_eyes.add(key)
                else:
                    self.four_eyes.discard(key)
        return touched

    def _remember_usage(self, pool: str, figure: Usage) -> None:
        points = self.usage_history.setdefault(pool, deque())
        points.append((figure.at, figure.leased, figure.capacity, figure.queued))
        # Keep one point from before the window: it says what the window started at.
        while len(points) > 1 and points[1][0] < figure.at - HISTORY_S:
            points.popleft()

    def may(self, permission: str, environment: str | None = None) -> bool:
        """Whether the server would let this console's person do it (there, for what
        acts on a run); True until it is known, since the server decides anyway."""
        if self.you is None:
            return True
        from wire.roles import permits

        return permits(((g.role, where) for g in self.you.grants
                        for where in g.environments or [""]), permission, environment)

    def may_approve(self, run: RunSummary) -> bool:
        """A run waits for an approval this person may give: allowed on its environment,
        and not the one who launched it where another person must approve."""
        waiting = run.waiting
        if waiting is None or "approve" not in waiting.actions:
            return False
        if waiting.another_person and self.you is not None and run.person == self.you.name:
            return False
        return self.may("approve", run.environment)

    def awaiting_approval(self) -> list[RunSummary]:
        """The runs waiting for an approval this person may give, oldest first."""
        return sorted((r for r in self.runs.values() if self.may_approve(r)),
                      key=lambda r: r.id)

    def counts(self) -> Counter[str]:
        """Workers by status (counted again only after a worker changed)."""
        if self._counts is None or self._counted_version != self.worker_version:
            self._counts = Counter(w.status for w in self.workers.values())
            self._counted_version = self.worker_version
        return self._counts


def status_text(status: str) -> Text:
    return Text(display.status(status), style=STATUS_STYLE.get(status, ""))


def safe(value: Any, limit: int = 200) -> Text:
    """Text from the server or a worker, never parsed as markup, cleaned of escapes."""
    return Text(plain(value, limit))


def plain(value: Any, limit: int = 200) -> str:
    """The same as a str, for a notification (always sent with markup=False)."""
    return clean_line("" if value is None else str(value), limit)


def latency(value: float | None) -> Text:
    if value is None:
        return Text("-", style="bright_black")
    style = "red" if value > 1000 else "yellow" if value > 250 else ""
    return Text(display.latency(value), style=style)


def load_text(worker: Worker) -> Text:
    values, cpus = worker.facts.load, worker.facts.cpus
    shown = display.load(values, cpus)
    if shown == "-":
        return Text(shown, style="bright_black")
    return Text(shown, style="yellow" if display.overloaded(values, cpus) else "")


def disk_text(worker: Worker) -> Text:
    mb = display.least_free_disk(d.free_mb for d in worker.facts.disks or ())
    if mb is None:
        return Text("-", style="bright_black")
    return Text(display.megabytes(mb),
                style="yellow" if worker.status == "warning" and "free on" in
                worker.reason else "")


def worker_name_text(worker: Worker) -> Text:
    text = safe(worker.name, 100)
    if worker.builtin:
        text.append(display.BUILTIN, style="italic bright_black")
    if worker.dynamic:
        # Short: names of dynamic workers are long already, and tables narrow.
        text.append(" (dyn)", style="italic cyan")
    return text


SPARKS = "▁▂▃▄▅▆▇█"


def utilization_style(utilization: float, queued: int = 0) -> str:
    return "red" if utilization >= 0.9 or queued else "yellow" if utilization >= 0.7 \
        else "green"


def meter(pool: Pool, width: int = 12) -> Text:
    """A pool's slots in use as a bar and a percentage, coloured by how full it is."""
    capacity, leased = pool.capacity, pool.leased
    if not capacity:
        return Text("no slots".ljust(width + 5), style="bright_black")
    share = min(1.0, leased / capacity)
    filled = round(share * width)
    if leased and not filled:
        filled = 1  # one step on one slot of many is not "nothing"
    style = utilization_style(share, pool.queued)
    text = Text()
    text.append("█" * filled, style=style)
    text.append("░" * (width - filled), style="bright_black")
    text.append(f" {share:4.0%}", style=style if share >= 0.7 else "")
    return text


def sparkline(points: Iterable[HistoryPoint], now: float, width: int = 20,
              span: float = HISTORY_S) -> Text:
    """The busiest utilization in each of `width` slices of the last `span` seconds."""
    step = span / width
    start = now - span
    values: list[float | None] = [None] * width
    last: float | None = None  # the value going into the next slice
    ordered = sorted(points, key=lambda p: p[0])
    index = 0
    for slot in range(width):
        slot_end = start + (slot + 1) * step
        best: float | None = last
        while index < len(ordered) and ordered[index][0] < slot_end:
            at, leased, capacity = ordered[index][:3]
            share = leased / capacity if capacity else 0.0
            if at >= start + slot * step:
                best = share if best is None else max(best, share)
            last = share
            index += 1
        values[slot] = best if best is not None else last
    text = Text()
    for value in values:
        if value is None:
            text.append("·", style="bright_black")
        else:
            spark = SPARKS[min(len(SPARKS) - 1, int(value * (len(SPARKS) - 1) + 0.5))]
            text.append(spark, style=utilization_style(value))
    return text


class Haystacks:
    """Each object's searchable text, made once per version of the object: filtering ten
    thousand workers on every keystroke then costs a substring test each."""

    def __init__(self, fields: Callable[[Any], Iterable[Any]]) -> None:
        self._fields = fields
        self._made: dict[str, tuple[Any, str]] = {}

    def matches(self, filter_text: str, key: str, obj: Any) -> bool:
        if not filter_text:
            return True
        made = self._made.get(key)
        if made is None or made[0] is not obj:
            made = self._made[key] = (obj, haystack(self._fields(obj)))
        return has_words(made[1], filter_text)


def haystack(fields: Iterable[Any]) -> str:
    return " ".join(str(f) for f in fields).lower()


def has_words(text: str, filter_text: str) -> bool:
    """Every word of the filter appears in `text` (a haystack: lower case)."""
    return all(word in text for word in filter_text.lower().split())


def matches(filter_text: str, *fields: Any) -> bool:
    """Every word of the filter appears in one of the fields (case-insensitive)."""
    return not filter_text or has_words(haystack(fields), filter_text)


RUN_STYLE = {  # a run or step status's colour
    "queued": "bright_black",
    "running": "cyan",
    "waiting": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "bright_black",
    "interrupted": "red",
    "skipped": "bright_black",
    "lost": "bold red",
}


def run_status_text(status: str) -> Text:
    return Text(display.status(status), style=RUN_STYLE.get(status, ""))

