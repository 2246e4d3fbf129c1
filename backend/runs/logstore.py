"""Run logs: lines cleaned, masked and numbered as they arrive, stored in batches, followed.

A flush stores a batch and only then hands it to the followers: each takes what it has
not seen yet (line numbers past its last one), from the batches stored last (kept in
memory, bounded) when it is close behind, from the store otherwise. So a late follower
gets the history and then the live tail with no gap and no duplicate, and memory stays
bounded however long the log or slow the follower.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from backend.nodes import Fenced
from backend.runs.loghub import LogHub
from backend.runs.logtext import MASK, Masker, Splitter, clean_block, masked_pieces
from backend.store.db import RETRY_FIRST_S, RETRY_MAX_S, Store, fault_of, pass_failed
from backend.store.models import LogChunk, Run
from wire.logcodec import stamp_before
from wire.text import clean_line

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
FLUSH_LINES = 5000
MAX_PENDING_LINES = 50_000
HELD_LINES = 500_000  # lines kept in memory while the store refuses them (about 40 MB)
READ_ROWS = 64
OUTPUT_LIMIT = 100 * 1024 * 1024  # bytes of output kept per run; the rest is discarded


@dataclass
class _Chunk:
    position: int
    worker: str
    stream: str
    first_seq: int
    parts: list[str] = field(default_factory=list)  # one per arrival: "ts\t" + its lines
    count: int = 0


class LogStoreFull(Exception):
    """The store cannot take the log and the lines held in memory reached their bound."""


class RunLog:
    """The log of one run while it is being written.

    Writes that fail (a full disk, a locked database) are retried with backoff: the
    lines stay in memory, in order, and are stored when the store takes them again, so
    the log has no gap. Only when they pass HELD_LINES does the step have to stop.
    """

    def __init__(self, store: Store, hub: LogHub, run_id: int, *, secrets: list[str],
                 next_seq: int = 1, output_limit: int = OUTPUT_LIMIT) -> None:
        self.store = store
        self.hub = hub
        self.run_id = run_id
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted(masked_pieces(secrets), key=len, reverse=True)
        self._secret_bytes = [s.encode() for s in self.secrets]
        self.seq = next_seq - 1
        self.output_limit = output_limit
        self.output_bytes = 0
        self.limit_reached = False
        self._pending: list[_Chunk] = []
        self._pending_lines = 0
        self._splitters: dict[tuple[int, str, str], Splitter] = {}
        self._maskers: dict[tuple[int, str, str], Masker] = {}
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._early: asyncio.Future[bool] | None = None  # a flush for a burst of lines
        self._retry_s = 0.0  # the wait before the next try after a failed write
        self.failed_writes = 0
        self.refused: str | None = None  # why this log's last write failed, if it did
        # The last line each step wrote to stderr on each worker: why it failed, often.
        self.last_stderr: dict[tuple[int, str], str] = {}
        self.discarded = False

    def start(self) -> None:
        self.hub.opened(self.run_id)
        self._flusher = asyncio.create_task(self._flush_forever())

    async def close(self, deadline_s: float | None = None) -> bool:
        """Store every line left; keep trying while the store fails (up to `deadline_s`
        seconds when given). True when everything was stored."""
        for key in list(self._splitters):
            self._end(key)
        if self._flusher:
            self._flusher.cancel()
        started = time.monotonic()
        while not await self.flush():
            if deadline_s is not None and time.monotonic() - started > deadline_s:
                return False
            await asyncio.sleep(self._retry_s)
        return True

    def discard(self) -> None:
        """Keep nothing more of this log (its run was taken over by another node)."""
        self.discarded = True
        self._pending, self._pending_lines = [], 0
        if self._flusher:
            self._flusher.cancel()

    async def output(self, position: int, worker: str, stream: str, data: bytes) -> None:
        """Raw bytes from a step's stdout or stderr, in whatever pieces they came.

        When the store falls behind, this waits for it: the step's reader pauses, SSH flow
        control slows the worker's output, and the server's memory stays bounded. When the
        store fails, lines are held (up to HELD_LINES), then LogStoreFull is raised.
        """
        if self._pending_lines >= MAX_PENDING_LINES:
            # Judged by this log's own last write, not by the store's fault: on a nearly
            # full disk another small write (a health check) may succeed and clear that
            # while these lines still cannot be stored, and the step must still stop.
            if self.refused is not None:
                # At the bound, one more try first: the store may take them again by now
                # (space freed, the last step's outcome stored, and this the next step's
                # first line); only a refusal now stops the step.
                if self._pending_lines >= HELD_LINES and not await self.flush():
                    raise LogStoreFull(self.refused)
            elif not await self.flush():
                # Held back behind a run's outcome, or refused: the step's reader
                # waits a moment rather than piling lines up towards the bound.
                await asyncio.sleep(self._retry_s)
        if self.limit_reached:
            return
        self.output_bytes += len(data)
        if self.output_bytes > self.output_limit:
            self.limit_reached = True
            self.note(position, worker, f"[output limit of {self.output_limit // 2**20} MB "
                                        "reached: the rest of this run's output is discarded, "
                                        "the step goes on]")
            return
        key = (position, worker, stream)
        if self._secret_bytes:
            masker = self._maskers.get(key)
            if masker is None:
                masker = self._maskers[key] = Masker(self._secret_bytes)
            data = masker.feed(data)
        splitter = self._splitters.get(key)
        if splitter is None:
            splitter = self._splitters[key] = Splitter()
        block = splitter.feed(data)
        if block is not None:
            self._lines(position, worker, stream, clean_block(block))

    def end_stream(self, position: int, worker: str) -> None:
        """A step's process ended: its unterminated last line is a line too."""
        for stream in ("stdout", "stderr"):
            self._end((position, worker, stream))

    def _end(self, key: tuple[int, str, str]) -> None:
        masker = self._maskers.pop(key, None)
        splitter = self._splitters.pop(key, None)
        if masker is not None:
            held = masker.finish()
            if held:
                splitter = splitter or Splitter()
                block = splitter.feed(held)
                if block is not None:
                    self._lines(*key, clean_block(block))
        line = splitter.finish() if splitter else None
        if line is not None:
            self._lines(*key, clean_block(line))

    def note(self, position: int, worker: str, text: str) -> None:
        """A line written by Workdeck itself (stream "workdeck")."""
        text = clean_line(text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        self._lines(position, worker, "workdeck", text)

    def _lines(self, position: int, worker: str, stream: str, text: str) -> None:
        """Cleaned (and masked) lines, one per `\\n`, that came in one read."""
        if self.discarded:
            return
        count = text.count("\n") + 1
        if stream == "stderr":
            last = text.rsplit("\n", 1)[-1].strip()
            if last:
                self.last_stderr[(position, worker)] = last[:200]
        last = self._pending[-1] if self._pending else None
        if last is None or (last.position, last.worker, last.stream) != \
                (position, worker, stream):
            last = _Chunk(position, worker, stream, self.seq + 1)
            self._pending.append(last)
        # One timestamp per arrival, on its first line: the others came in the same read.
        last.parts.append(f"{time.time():.3f}\t{text}")
        last.count += count
        self.seq += count
        self._pending_lines += count
        if self._pending_lines >= FLUSH_LINES and not self._lock.locked() and \
                self._retry_s == 0 and (self._early is None or self._early.done()):
            self._early = asyncio.ensure_future(self.flush())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(max(FLUSH_INTERVAL_S, self._retry_s))
            try:
                await self.flush()
            except Exception:  # the flusher must outlive anything a flush can meet
                pass_failed(log, "flushing the log of run %s failed", self.run_id)

    async def flush(self) -> bool:
        """Store what is pending; False when the store refused it (it stays pending)."""
        if self.store.urgent and self._pending:
            # A run's outcome waits for the store: it goes first (space freed on a full
            # disk would otherwise go to these lines, and the outcome wait on).
            self._retry_s = max(self._retry_s, RETRY_FIRST_S)
            return False
        async with self._lock:
            batch, self._pending, self._pending_lines = self._pending, [], 0
            if not batch:
                return True
            rows = [{"run_id": self.run_id, "first_seq": c.first_seq,
                     "last_seq": c.first_seq + c.count - 1, "position": c.position,
                     "worker": c.worker, "stream": c.stream, "lines": "\n".join(c.parts)}
                    for c in batch]
            # The write goes on in its thread whatever happens to this task: a flush
            # cancelled while its write waited for a busy thread pool used to drop the
            # batch, taken out of `_pending` already, with nothing said.
            write = asyncio.ensure_future(asyncio.to_thread(_insert, self.store, rows))
            cancelled = await _outlive_cancellation(write)
            try:
                write.result()
            except Fenced:
                # This node was found lost, its run taken over: its lines go nowhere.
                self.discard()
                return True
            except (Exception, asyncio.CancelledError) as exc:
                # Kept, in order, ahead of what came meanwhile: stored on a later try.
                self._pending = batch + self._pending
                self._pending_lines += sum(c.count for c in batch)
                self.failed_writes += 1
                self.refused = fault_of(exc) or str(exc) or type(exc).__name__
                self._retry_s = min(RETRY_MAX_S, max(RETRY_FIRST_S, self._retry_s * 2))
                if self.failed_writes == 1 or fault_of(exc) is None:
                    log.warning("the log of run %s waits for the store: %s", self.run_id,
                                fault_of(exc) or exc)
                if cancelled:
                    raise asyncio.CancelledError from None
                return False
            self._retry_s, self.refused = 0.0, None
            # Still under the lock: followers must get batches in the order of their lines.
            self.hub.stored(self.run_id, [
                chunk_of(r["first_seq"], r["last_seq"], r["position"], r["worker"],
                         r["stream"], r["lines"]) for r in rows])
        if cancelled:
            raise asyncio.CancelledError
        return True


async def _outlive_cancellation(future: asyncio.Future[Any]) -> bool:
    """Wait until `future` is done even when this task is cancelled meanwhile; True when
    it was (the caller finishes its bookkeeping, then raises CancelledError)."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break  # the caller reads the exception from the future
    return cancelled


def chunk_of(first_seq: int, last_seq: int, position: int, worker: str, stream: str,
             lines: str) -> dict[str, Any]:
    """A chunk as readers get it (wire.events.LogChunk)."""
    return {"first_seq": first_seq, "last_seq": last_seq, "position": position,
            "worker": worker, "stream": stream, "lines": lines,
            "step": position}  # its name of one release ago (README, "Changed")


def _insert(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.write() as session:
        # Not the ORM's bulk insert: the rows are plain values already.
        store.insert_rows(session, LogChunk.__table__, rows)


def read(store: Store, run_id: int, after: int = 0, limit: int = 50_000
         ) -> list[dict[str, Any]]:
    """Chunks of lines numbered after `after`, oldest first, about `limit` lines at most.

    A chunk is {first_seq, step, worker, stream, lines}, its `lines` one per `\\n`: the
    first line of each read from the worker is `<unix time>\\t<text>`, and the lines
    after it, with no tab (cleaned text has none), came at that time too. It is the
    stored form, sent on as it is, since expanding a million lines into objects would
    cost more than everything else a log does.
    """
    with store.read() as session:
        # A bounded number of rows per read: a slow follower of a long log pages through
        # it rather than loading the rest of it at once.
        # Core rather than ORM execution: the ORM would fetch every row before the first.
        rows = session.connection().execute(
            select(LogChunk.first_seq, LogChunk.last_seq, LogChunk.position, LogChunk.worker,
                   LogChunk.stream, LogChunk.lines)
            .where(LogChunk.run_id == run_id, LogChunk.last_seq > after)
            .order_by(LogChunk.last_seq).limit(READ_ROWS)
        )
        try:
            return _take_chunks(rows, after, limit)
        finally:
            rows.close()


def read_back(store: Store, run_id: int, before: int) -> list[dict[str, Any]]:
    """Chunks of lines numbered before `before`, newest first, a bounded number of rows:
    for reading a log backwards (a search for an earlier line)."""
    with store.read() as session:
        rows = session.connection().execute(
            select(LogChunk.first_seq, LogChunk.last_seq, LogChunk.position, LogChunk.worker,
                   LogChunk.stream, LogChunk.lines)
            .where(LogChunk.run_id == run_id, LogChunk.first_seq < before)
            .order_by(LogChunk.first_seq.desc()).limit(READ_ROWS)).all()
    chunks = []
    for row in rows:
        lines, last = row.lines, row.last_seq
        if last >= before:  # only the part before `before`
            keep = before - row.first_seq
            lines = "\n".join(lines.split("\n", keep)[:keep])
            last = before - 1
        chunks.append(chunk_of(row.first_seq, last, row.position, row.worker, row.stream,
                               lines))
    return chunks


def _take_chunks(rows: Any, after: int, limit: int) -> list[dict[str, Any]]:
    # Rows are taken one at a time from the cursor: a chunk can be megabytes, and only
    # as many as the limit needs are ever in memory.
    chunks: list[dict[str, Any]] = []
    total = 0
    for row in rows:
        lines, first = row.lines, row.first_seq
        if first <= after:
            # Only the unseen end of a chunk the reader has partly seen.
            skip = after - first + 1
            seen = lines.split("\n", skip)
            lines = seen.pop()
            if "\t" not in lines.partition("\n")[0]:
                lines = f"{stamp_before(seen, len(seen)):.3f}\t{lines}"
            first = after + 1
        last = row.last_seq
        room = limit - total
        if last - first + 1 > room:
            # Cut to the limit: a reader asked for small pieces (a console stays responsive).
            lines = "\n".join(lines.split("\n", room)[:room])
            last = first + room - 1
        chunks.append(chunk_of(first, last, row.position, row.worker, row.stream, lines))
        total += last - first + 1
        if total >= limit:
            break
    return chunks


def closed(store: Store, run_id: int) -> bool:
    """Every line of the run is stored (its node closed its log)."""
    with store.read() as session:
        return bool(session.exec(select(Run.log_closed).where(Run.id == run_id)).first())


def last_seq(store: Store, run_id: int) -> int:
    with store.read() as session:
        value = session.exec(select(func.max(LogChunk.last_seq))
                             .where(LogChunk.run_id == run_id)).one()
    return value or 0
