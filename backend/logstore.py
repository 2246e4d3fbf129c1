"""Run logs: lines cleaned, masked and numbered as they arrive, stored in batches, followed.

Followers never get lines from memory: a flush stores a batch and then wakes them, and
each reads what it has not seen yet (line numbers past its last one) from the store.
So a late follower gets the history and then the live tail with no gap and no
duplicate, and memory stays bounded however long the log or slow the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from backend.db import Store
from backend.models import LogChunk
from backend.sanitize import MAX_LINE, clean_line

FLUSH_INTERVAL_S = 0.1
FLUSH_LINES = 5000
OUTPUT_LIMIT = 100 * 1024 * 1024  # bytes of output kept per run; the rest is discarded
MASK = "********"


@dataclass
class _Pending:
    seq: int
    at: float
    position: int
    worker: str
    stream: str
    text: str


@dataclass
class _Splitter:
    """Cuts a byte stream into lines, keeping at most MAX_LINE bytes of any one line."""

    carry: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            lines.append(self._take(data[start:end]))
            start = end + 1
        rest = data[start:]
        room = MAX_LINE * 4 - len(self.carry)  # bytes, generous for multi-byte UTF-8
        if room > 0:
            self.carry += rest[:room]
        self.dropped += max(0, len(rest) - max(room, 0))
        return lines

    def _take(self, tail: bytes) -> bytes:
        room = MAX_LINE * 4 - len(self.carry)
        line = bytes(self.carry) + tail[:max(room, 0)]
        dropped = self.dropped + max(0, len(tail) - max(room, 0))
        self.carry.clear()
        self.dropped = 0
        if dropped:
            line += f" [... {dropped} more bytes cut]".encode()
        return line

    def finish(self) -> list[bytes]:
        return [self._take(b"")] if self.carry or self.dropped else []


class RunLog:
    """The log of one run while it is being written."""

    def __init__(self, store: Store, hub: LogHub, run_id: int, *, secrets: list[str],
                 next_seq: int = 1, output_limit: int = OUTPUT_LIMIT) -> None:
        self.store = store
        self.hub = hub
        self.run_id = run_id
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.seq = next_seq - 1
        self.output_limit = output_limit
        self.output_bytes = 0
        self.limit_reached = False
        self._pending: list[_Pending] = []
        self._splitters: dict[tuple[int, str, str], _Splitter] = {}
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._early: asyncio.Future[None] | None = None  # a flush for a burst of lines

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        for key, splitter in list(self._splitters.items()):
            for raw in splitter.finish():
                self._add(*key, raw)
        self._splitters.clear()
        if self._flusher:
            self._flusher.cancel()
        await self.flush()

    def output(self, position: int, worker: str, stream: str, data: bytes) -> None:
        """Raw bytes from a step's stdout or stderr, in whatever pieces they came."""
        if self.limit_reached:
            return
        self.output_bytes += len(data)
        if self.output_bytes > self.output_limit:
            self.limit_reached = True
            self.note(position, worker, f"[output limit of {self.output_limit // 2**20} MB "
                                        "reached: the rest of this run's output is discarded, "
                                        "the step goes on]")
            return
        splitter = self._splitters.setdefault((position, worker, stream), _Splitter())
        for raw in splitter.feed(data):
            self._add(position, worker, stream, raw)

    def end_stream(self, position: int, worker: str) -> None:
        """A step's process ended: its unterminated last lines are lines too."""
        for stream in ("stdout", "stderr"):
            splitter = self._splitters.pop((position, worker, stream), None)
            if splitter:
                for raw in splitter.finish():
                    self._add(position, worker, stream, raw)

    def note(self, position: int, worker: str, text: str) -> None:
        """A line written by Workdeck itself (stream "workdeck")."""
        self._append(position, worker, "workdeck", text)

    def _add(self, position: int, worker: str, stream: str, raw: bytes) -> None:
        text = clean_line(raw)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        self._append(position, worker, stream, text)

    def _append(self, position: int, worker: str, stream: str, text: str) -> None:
        self.seq += 1
        self._pending.append(_Pending(self.seq, time.time(), position, worker, stream, text))
        if len(self._pending) >= FLUSH_LINES and not self._lock.locked() and \
                (self._early is None or self._early.done()):
            self._early = asyncio.ensure_future(self.flush())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            chunks: list[dict[str, Any]] = []
            for line in batch:
                last = chunks[-1] if chunks else None
                if last and (last["position"], last["worker"], last["stream"]) == \
                        (line.position, line.worker, line.stream):
                    last["last_seq"] = line.seq
                    last["parts"].append(f"{line.at:.3f}\t{line.text}")
                else:
                    chunks.append({"run_id": self.run_id, "first_seq": line.seq,
                                   "last_seq": line.seq, "position": line.position,
                                   "worker": line.worker, "stream": line.stream,
                                   "parts": [f"{line.at:.3f}\t{line.text}"]})
            rows = [{**{k: v for k, v in c.items() if k != "parts"},
                     "lines": "\n".join(c["parts"])} for c in chunks]
            await asyncio.to_thread(_insert, self.store, rows)
        self.hub.notify(self.run_id)


def _insert(store: Store, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    with store.write() as session:
        session.execute(insert(LogChunk), rows)


def read(store: Store, run_id: int, after: int = 0, limit: int = 20_000
         ) -> list[dict[str, Any]]:
    """Lines numbered after `after`, oldest first, at most about `limit` of them."""
    with store.read() as session:
        chunks = session.exec(
            select(LogChunk).where(LogChunk.run_id == run_id, LogChunk.last_seq > after)
            .order_by(LogChunk.first_seq)
        ).all()
        lines: list[dict[str, Any]] = []
        for chunk in chunks:
            for offset, part in enumerate(chunk.lines.split("\n")):
                seq = chunk.first_seq + offset
                if seq <= after:
                    continue
                at, _, text = part.partition("\t")
                lines.append({"seq": seq, "at": float(at), "step": chunk.position,
                              "worker": chunk.worker, "stream": chunk.stream, "text": text})
            if len(lines) >= limit:
                break
        return lines


def last_seq(store: Store, run_id: int) -> int:
    with store.read() as session:
        value = session.exec(select(func.max(LogChunk.last_seq))
                             .where(LogChunk.run_id == run_id)).one()
    return value or 0


class LogHub:
    """Wakes the followers of a run when new lines are stored or the run ends."""

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}

    def notify(self, run_id: int) -> None:
        event = self._events.pop(run_id, None)
        if event:
            event.set()

    async def wait(self, run_id: int, timeout: float) -> None:
        event = self._events.setdefault(run_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
