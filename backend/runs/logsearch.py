"""Finding a line in a run's whole log: the first error, or a text, from a line on.

The console keeps only a window of a long log; the store has all of it, so a search
or "first error" is answered here, reading the log a page at a time (memory stays
bounded however long it is). Chunks that cannot hold a match are skipped whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from backend.runs.logstore import read, read_back
from backend.store.db import Store
from wire.logcodec import expand, is_error, may_hold_error

PAGE = 50_000  # lines read at a time


def find_line(store: Store, run_id: int, *, text: str = "", errors: bool = False,
              after: int = 0, before: int | None = None, position: int | None = None
              ) -> dict[str, Any] | None:
    """The first line after line `after` (or, with `before`, the last line before it)
    that holds `text` (any case) or, with `errors`, reads as an error; only lines of the
    step at `position` when given. None when no line does."""
    needle = text.lower()

    def may_match(chunk: dict[str, Any]) -> bool:
        if position is not None and chunk["position"] != position:
            return False
        if errors:
            return may_hold_error(chunk)
        return needle in chunk["lines"].lower()

    def matches(line: dict[str, Any]) -> bool:
        return is_error(line) if errors else needle in line["text"].lower()

    backwards = before is not None
    for chunk in (_backwards(store, run_id, before) if backwards
                  else _forwards(store, run_id, after)):
        if not may_match(chunk):
            continue
        lines = expand(chunk)
        for line in reversed(lines) if backwards else lines:
            if matches(line):
                return line
    return None


def _forwards(store: Store, run_id: int, after: int) -> Iterator[dict[str, Any]]:
    while True:
        chunks = read(store, run_id, after, PAGE)
        if not chunks:
            return
        yield from chunks
        after = chunks[-1]["last_seq"]


def _backwards(store: Store, run_id: int, before: int) -> Iterator[dict[str, Any]]:
    while before > 1:
        chunks = read_back(store, run_id, before)
        if not chunks:
            return
        yield from chunks
        before = chunks[-1]["first_seq"]
