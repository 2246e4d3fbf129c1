"""JSON for the large things the API sends: logs, the fleet, the push stream.

orjson escapes strings many times faster than the standard library (a million log lines
are 80 MB of string to escape: 0.2 s with `json`, under 0.01 s with orjson), on both
ends of a followed log. What orjson refuses (a lone surrogate from a file name, an
integer past 64 bits) falls back to the standard library, which writes it as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


# Characters that orjson writes as they are but that some readers take for a line end
# (Python's str.splitlines, and httpx's line reader built on it): in a stream of
# Server-Sent Events a line end inside the data would cut the event in two. In JSON they
# can only be inside strings, where their escapes mean the same.
_LINE_ENDS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"),
              (b"\xe2\x80\xa9", b"\\u2029"))


def dumps(data: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, on one line for any reader."""
    try:
        text = orjson.dumps(data, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(data, separators=(",", ":")).encode()
    if not text.isascii():  # one quick pass; most logs are ASCII
        for raw, escaped in _LINE_ENDS:
            text = text.replace(raw, escaped)
    return text


def loads(text: bytes | str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # NaN and the like, which the standard library reads; its error otherwise.
        return json.loads(text)
