"""Run logs: lines cleaned, masked and numbered as they arrive, stored in batches, followed.

A flush stores a batch and only then hands it to the followers: each takes what it has
not seen yet (line numbers past its last one), from the batches stored last (kept in
memory, bounded) when it is close behind, from the store otherwise. So a late follower
gets the history and then the live tail with no gap and no duplicate, and memory stays
bounded however long the log or slow the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from backend.store.db import RETRY_FIRST_S, RETRY_MAX_S, Store, fault_of
from backend.store.models import LogChunk
from wire.logcodec import stamp_before
from wire.text import MAX_LINE, clean_line

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
FLUSH_LINES = 5000
MAX_PENDING_LINES = 50_000
HELD_LINES = 500_000  # lines kept in memory while the store refuses them (about 40 MB)
READ_ROWS = 64
RECENT_LINES = 200_000  # lines of each running run kept in memory for its followers
RECENT_AFTER_END_S = 5.0  # followers still catching up on a finished run read memory
OUTPUT_LIMIT = 100 * 1024 * 1024  # bytes of output kept per run; the rest is discarded
MASK = "********"
MASK_BYTES = MASK.encode()


_PLAIN = bytes(range(0x20, 0x7F)) + b"\n"  # printable ASCII and newlines
CARRY_LIMIT = MAX_LINE * 4  # bytes of an unfinished line held while waiting for its end


@dataclass
class _Splitter:
    """Cuts a byte stream into blocks of whole lines; an unfinished line waits, bounded."""

    carry: bytes = b""
    dropped: int = 0

    def feed(self, data: bytes) -> bytes | None:
        data = self.carry + data if self.carry else data
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
            return None
        block, rest = data[:last], data[last + 1:]
        if self.dropped:
            # The first line of the block is the long one whose middle was dropped.
            first, _, others = block.partition(b"\n")
            block = self._cut(first) + (b"\n" + others if others or b"\n" in block else b"")
        self.carry = b""
        self._hold(rest)
        return block

    def _hold(self, data: bytes) -> None:
        if len(data) > CARRY_LIMIT:
            self.dropped += len(data) - CARRY_LIMIT
            data = data[:CARRY_LIMIT]
        self.carry = data

    def _cut(self, line: bytes) -> bytes:
        dropped, self.dropped = self.dropped, 0
        return line + f" [... {dropped} more bytes cut]".encode()

    def finish(self) -> bytes | None:
        if not self.carry and not self.dropped:
            return None
        line = self._cut(self.carry) if self.dropped else self.carry
        self.carry = b""
        return line


def clean_block(block: bytes) -> str:
    """A block of lines, cleaned, still one line per `\\n`.

    Plain ASCII with no overlong line (the common case) is taken whole: a million-line
    log must not pay for a Python step per line.
    """
    if not block.translate(None, _PLAIN) and not _has_long_line(block):
        return block.decode("ascii")
    return "\n".join(clean_line(line) for line in block.split(b"\n"))


def _has_long_line(block: bytes) -> bool:
    # Any MAX_LINE + 1 bytes in a row hold one of these probes, one every MAX_LINE bytes,
    # so an overlong line is found by looking around each probe; there are few of them.
    for probe in range(0, len(block), MAX_LINE):
        low = max(0, probe - MAX_LINE - 1)
        newline = block.rfind(b"\n", low, probe)
        if newline < 0 and low > 0:
            return True
        start = newline + 1 if newline >= 0 else 0
        end = block.find(b"\n", probe, probe + MAX_LINE + 1)
        if end < 0:
            end = min(len(block), probe + MAX_LINE + 1)
        if end - start > MAX_LINE:
            return True
    return False


@dataclass
class _Chunk:
    position: int
    worker: str
    stream: str
    first_seq: int
    parts: list[str] = field(default_factory=list)  # one per arrival: "ts\t" + its lines
    count: int = 0


# Bytes by how often they appear in output, most common first (text, then the rest).
_COMMON = b" etaoinsrhldcumfpgwybvkxjqz\n0123456789ETAOINSRHLDCUMFPGWYBVKXJQZ.,:/-_=()'\"[]"


def _commonness(byte: int) -> int:
    found = _COMMON.find(bytes([byte]))
    return -1 if found < 0 else len(_COMMON) - found  # unlisted bytes are the rarest


class _Masker:
    """Masks secrets in a raw byte stream, before it is split into lines or cleaned.

    The end of each piece that could be the start of a secret is held back until the
    next piece shows whether it is: a secret split across two reads, across lines, with
    a tab, or at the line cut is masked all the same.
    """

    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = secrets  # longest first, so a secret inside another is masked whole
        # Each secret's rarest byte: where it is missing (a one-byte scan, at memory speed)
        # the secret cannot be, and the full search is skipped.
        self.rare = [min(secret, key=_commonness).to_bytes(1, "big") for secret in secrets]
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        if self.held:
            data, self.held = self.held + data, b""
        for secret, rare in zip(self.secrets, self.rare, strict=True):
            if rare in data and secret in data:
                data = data.replace(secret, MASK_BYTES)
        keep = 0
        last = data[-1:]
        for secret in self.secrets:
            if last not in secret:
                continue  # the piece cannot end with the start of this secret
            for size in range(min(len(secret) - 1, len(data)), keep, -1):
                if data.endswith(secret[:size]):
                    keep = size
                    break
        if keep:
            self.held = data[-keep:]
            return data[:-keep]
        return data

    def finish(self) -> bytes:
        held, self.held = self.held, b""
        return held


MIN_MASKED = 4  # shorter values would mask every such letter, revealing them


def masked_pieces(secrets: list[str]) -> set[str]:
    """What to mask for these secrets: each whole, and each line of a multi-line one (a
    key printed line by line, indented or through `sed`, is still the key)."""
    pieces = {s for s in secrets if s}
    for secret in secrets:
        if "\n" in secret:
            pieces.update(line.strip() for line in secret.splitlines()
                          if len(line.strip()) >= MIN_MASKED)
    return pieces


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
        self._splitters: dict[tuple[int, str, str], _Splitter] = {}
        self._maskers: dict[tuple[int, str, str], _Masker] = {}
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._early: asyncio.Future[bool] | None = None  # a flush for a burst of lines
        self._retry_s = 0.0  # the wait before the next try after a failed write
        self.failed_writes = 0
        # The last line each step wrote to stderr on each worker: why it failed, often.
        self.last_stderr: dict[tuple[int, str], str] = {}

    def start(self) -> None:
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

    async def output(self, position: int, worker: str, stream: str, data: bytes) -> None:
        """Raw bytes from a step's stdout or stderr, in whatever pieces they came.

        When the store falls behind, this waits for it: the step's reader pauses, SSH flow
        control slows the worker's output, and the server's memory stays bounded. When the
        store fails, lines are held (up to HELD_LINES), then LogStoreFull is raised.
        """
        if self._pending_lines >= MAX_PENDING_LINES:
            if self.store.fault is None:
                await self.flush()
            elif self._pending_lines >= HELD_LINES:
                raise LogStoreFull(self.store.fault)
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
                masker = self._maskers[key] = _Masker(self._secret_bytes)
            data = masker.feed(data)
        splitter = self._splitters.get(key)
        if splitter is None:
            splitter = self._splitters[key] = _Splitter()
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
                splitter = splitter or _Splitter()
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
                log.exception("flushing the log of run %s failed", self.run_id)

    async def flush(self) -> bool:
        """Store what is pending; False when the store refused it (it stays pending)."""
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
            except (Exception, asyncio.CancelledError) as exc:
                # Kept, in order, ahead of what came meanwhile: stored on a later try.
                self._pending = batch + self._pending
                self._pending_lines += sum(c.count for c in batch)
                self.failed_writes += 1
                self._retry_s = min(RETRY_MAX_S, max(RETRY_FIRST_S, self._retry_s * 2))
                if self.failed_writes == 1 or fault_of(exc) is None:
                    log.warning("the log of run %s waits for the store: %s", self.run_id,
                                fault_of(exc) or exc)
                if cancelled:
                    raise asyncio.CancelledError from None
                return False
            self._retry_s = 0.0
            # Still under the lock: followers must get batches in the order of their lines.
            self.hub.stored(self.run_id, [
                {"first_seq": r["first_seq"], "last_seq": r["last_seq"],
                 "step": r["position"], "worker": r["worker"], "stream": r["stream"],
                 "lines": r["lines"]} for r in rows])
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


def _insert(store: Store, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    with store.write() as session:
        # Core, not the ORM's bulk insert: the rows are plain values already.
        session.connection().execute(insert(LogChunk.__table__), rows)


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
        chunks.append({"first_seq": row.first_seq, "last_seq": last, "step": row.position,
                       "worker": row.worker, "stream": row.stream, "lines": lines})
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
        chunks.append({"first_seq": first, "last_seq": last, "step": row.position,
                       "worker": row.worker, "stream": row.stream, "lines": lines})
        total += last - first + 1
        if total >= limit:
            break
    return chunks


def last_seq(store: Store, run_id: int) -> int:
    with store.read() as session:
        value = session.exec(select(func.max(LogChunk.last_seq))
                             .where(LogChunk.run_id == run_id)).one()
    return value or 0


class LogHub:
    """Wakes the followers of a run when new lines are stored or the run ends.

    It also holds the batches stored last (a bounded number of lines), so that a
    follower close behind takes them from memory; one further behind reads the store.
    """

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._recent: dict[int, deque[dict[str, Any]]] = {}
        self._recent_lines: dict[int, int] = {}

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
        self.notify(run_id)

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
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
