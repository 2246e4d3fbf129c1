"""The logs of running runs as their followers see them: the batches stored last, kept
in memory (bounded) so that a follower close behind reads memory, not the store, and
woken when a batch is stored."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from backend.events import woken

RECENT_LINES = 200_000  # lines of each running run kept in memory for its followers
RECENT_AFTER_END_S = 5.0  # followers still catching up on a finished run read memory


class LogHub:
    """Wakes the followers of a run when new lines are stored or the run ends.

    It also holds the batches stored last (a bounded number of lines), so that a
    follower close behind takes them from memory; one further behind reads the store.
    """

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._recent: dict[int, deque[dict[str, Any]]] = {}
        self._recent_lines: dict[int, int] = {}
        self._writing: set[int] = set()  # runs whose log may still get lines
        # Told a run's id when lines of it are stored or its log ends here (the fan-out
        # tells the other nodes' followers).
        self.told: Callable[[int], None] = lambda _run_id: None
        self.lines_written = self.bytes_written = 0  # since the server started

    def writing(self, run_id: int) -> bool:
        """Lines of this run may still be stored (its log is open, or held lines wait
        for the store): a follower does not end at its finished status yet."""
        return run_id in self._writing

    def opened(self, run_id: int) -> None:
        self._writing.add(run_id)

    def written(self, run_id: int) -> None:
        """Every line of the run is stored (or given up on, at a stop)."""
        self._writing.discard(run_id)
        self.notify(run_id)
        self.told(run_id)

    def stored(self, run_id: int, chunks: list[dict[str, Any]]) -> None:
        recent = self._recent.setdefault(run_id, deque())
        count = self._recent_lines.get(run_id, 0)
        for chunk in chunks:
            recent.append(chunk)
            count += chunk["last_seq"] - chunk["first_seq"] + 1
        while recent and count - (recent[0]["last_seq"] - recent[0]["first_seq"] + 1) \
                >= RECENT_LINES:
            oldest = recent.popleft()
            count -= oldest["last_seq"] - oldest["first_seq"] + 1
        self._recent_lines[run_id] = count
        for chunk in chunks:  # for metrics: lines and bytes stored, with their newlines
            self.lines_written += chunk["last_seq"] - chunk["first_seq"] + 1
            text = chunk["lines"]
            self.bytes_written += (len(text) if text.isascii() else len(text.encode())) + 1
        self.notify(run_id)
        self.told(run_id)

    def latest_after(self, run_id: int, seen: int, limit: int) -> list[dict[str, Any]] | None:
        """Recent chunks starting right after line `seen` (about `limit` lines), or None
        when they are not in memory any more."""
        taken: list[dict[str, Any]] = []
        total = 0
        for chunk in self._recent.get(run_id, ()):
            if chunk["last_seq"] <= seen:
                continue
            if not taken and chunk["first_seq"] != seen + 1:
                return None
            taken.append(chunk)
            total += chunk["last_seq"] - chunk["first_seq"] + 1
            if total >= limit:
                break
        return taken or None

    def newest(self, run_id: int) -> int:
        """The last line number stored for a run being written (0 when none or unknown)."""
        recent = self._recent.get(run_id)
        return recent[-1]["last_seq"] if recent else 0

    def forget(self, run_id: int, after: float = RECENT_AFTER_END_S) -> None:
        """Drop a run's recent batches, after a while: its followers are often a little
        behind when it ends, and finish faster from memory than from the store."""
        if after > 0:
            asyncio.get_running_loop().call_later(after, self.forget, run_id, 0)
            return
        self._recent.pop(run_id, None)
        self._recent_lines.pop(run_id, None)

    def notify(self, run_id: int) -> None:
        event = self._events.pop(run_id, None)
        if event:
            event.set()

    async def wait(self, run_id: int, timeout: float) -> None:
        event = self._events.setdefault(run_id, asyncio.Event())
        await woken(event, timeout)
