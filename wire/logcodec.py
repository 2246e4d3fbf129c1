"""A run log on the wire: chunks of lines, and the text and JSON Lines made of them.

A chunk is {first_seq, last_seq, position, worker, stream, lines}: `position` is the
step's position in the run, `lines` one line per `\\n`. The first line of each read from the
worker is `<unix time>\\t<text>`; the lines after it, with no tab (cleaned text has
none), came at that time too. A million lines go through here on every `runs log`, so
whole chunks are formatted at once, never an object per line.
"""

from __future__ import annotations

import json
import time
from typing import Any

MARKS = {"stdout": "", "stderr": "! ", "workdeck": "** "}  # what a line's stream looks like


def is_error(line: dict[str, Any]) -> bool:
    """A line that reads as an error: what `e` (first error) jumps to, shown in red."""
    text = line["text"].lower()
    return (line["stream"] == "stderr" and ("error" in text or "fatal" in text or
                                            "fail" in text)) or text.startswith("error")


def may_hold_error(chunk: dict[str, Any]) -> bool:
    """False when no line of the chunk can be an error (most chunks: one scan, no split)."""
    lines = chunk["lines"].lower()
    if chunk["stream"] == "stderr":
        return "error" in lines or "fatal" in lines or "fail" in lines
    return "error" in lines


def expand(chunk: dict[str, Any], parts: list[str] | None = None, offset: int = 0,
           at: float = 0.0) -> list[dict[str, Any]]:
    """A chunk's lines as {seq, at, position, worker, stream, text}; or only `parts`, its
    already split lines from `offset` on (`at`: the time of the line before them)."""
    if parts is None:
        parts = chunk["lines"].split("\n")
    result = []
    for index, part in enumerate(parts, chunk["first_seq"] + offset):
        stamp, tab, text = part.partition("\t")
        if tab:
            at = float(stamp)
        else:
            text = part
        result.append({"seq": index, "at": at, "position": chunk["position"],
                       "worker": chunk["worker"], "stream": chunk["stream"], "text": text})
    return result


def stamp_before(parts: list[str], index: int) -> float:
    """The time of the stamped line nearest before parts[index] (0 if none)."""
    for part in reversed(parts[max(0, index - 100_000):index]):
        stamp, tab, _text = part.partition("\t")
        if tab:
            return float(stamp)
    return 0.0


class Clock:
    """Unix times as local HH:MM:SS, one conversion per distinct second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, at: float) -> str:
        second = int(at)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%H:%M:%S", time.localtime(second))
        return self._text


def where(chunk: dict[str, Any]) -> str:
    """`position:worker`, or only the position for the run's own lines."""
    position = chunk["position"]
    return f"{position}:{chunk['worker']}" if chunk["worker"] else f"{position}"


def as_text(chunk: dict[str, Any], clock: Clock, at: float = 0.0) -> str:
    """The chunk as `runs log` prints it: `HH:MM:SS [step:worker] text`, each line ended
    (`at`: the time of the line before the chunk, for a chunk cut from a longer one).

    The lines of one read share their prefix, so each read is prefixed with one
    `str.replace` rather than line by line: a million lines take a fifth of the time."""
    tail = f" [{where(chunk)}] {MARKS.get(chunk['stream'], '')}"
    text = chunk["lines"]
    prefix = clock(at) + tail
    out = []
    start = 0  # where the lines under `prefix` begin
    # A tab ends a read's stamp, and no other line holds one.
    tab = text.find("\t")
    while tab != -1:
        stamped = text.rfind("\n", 0, tab) + 1
        if stamped > start:
            out.append(_prefixed(prefix, text[start:stamped - 1]))
        prefix = clock(float(text[stamped:tab])) + tail
        start = tab + 1
        tab = text.find("\t", start)
    out.append(_prefixed(prefix, text[start:]))
    return "".join(out)


def _prefixed(prefix: str, lines: str) -> str:
    return prefix + lines.replace("\n", "\n" + prefix) + "\n"


def as_json_lines(chunk: dict[str, Any], at: float = 0.0) -> str:
    """The chunk as JSON Lines, one object per line with the keys of `expand`."""
    # `step`: the name of `position` one release ago (README, "Changed").
    fields = json.dumps({"position": chunk["position"], "worker": chunk["worker"],
                         "stream": chunk["stream"], "step": chunk["position"]})[1:-1]
    dumps = json.dumps
    out = []
    stamp_text = dumps(at)
    for seq, part in enumerate(chunk["lines"].split("\n"), chunk["first_seq"]):
        stamp, tab, text = part.partition("\t")
        if tab:
            stamp_text = dumps(float(stamp))
        else:
            text = part
        out.append(f'{{"seq": {seq}, "at": {stamp_text}, {fields}, "text": {dumps(text)}}}')
    out.append("")
    return "\n".join(out)
