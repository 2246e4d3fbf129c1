"""Make text from workers safe to store and show: no escape sequences, no control bytes."""

from __future__ import annotations

import re

MAX_LINE = 16_384  # characters of one line kept; a marker says how much was cut

# CSI, OSC, DCS/SOS/PM/APC strings and single-character escapes, as terminals parse them,
# including their 8-bit C1 forms.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?              # CSI ... final byte
    | (?:\x1b\]|\x9d)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)  # OSC ... BEL or ST
    | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c\n]*(?:\x1b\\|\x9c)  # DCS, SOS, PM, APC
    | \x1b[ -/]*[0-~]?                             # other escapes (charset, keypad, ...)
    """,
    re.VERBOSE,
)
# A string sequence (OSC, DCS...) with no terminator on its line: only its introducer is
# dropped (by the last alternative above, or as a C1 control below), so an unterminated
# one cannot swallow the text after it.
# Every C0 and C1 control except tab, the Unicode bidirectional controls that can make a
# line read differently from what it is, line and paragraph separators, and invisible
# characters that only serve to make two texts look alike (zero-width space, joiner
# aside: emoji need it).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u180e\u200b\u200c\u200e\u200f"
                       "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def clean_text(data: bytes | str) -> str:
    """Decode (invalid UTF-8 becomes U+FFFD), strip escapes and controls, keep newlines.

    A carriage return inside a line would let later text overwrite earlier text on a
    terminal, so a line keeps only what follows its last `\\r` (what a terminal shows).
    A `\\r` that ends a line is a CRLF line end (often split from its `\\n` already),
    not an overwrite: the line is kept.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if text.isprintable():
        # Most text: no escape, control, tab, carriage return or invisible format
        # character (each of those is not printable), so nothing to take out.
        return text
    return _cleaned(text)


def _cleaned(text: str) -> str:
    text = _ESCAPES.sub("", text)
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        text = "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1]
                         for line in text.split("\n"))
    return _CONTROLS.sub("", text.replace("\t", "    "))


def clean_line(data: bytes | str, limit: int = MAX_LINE) -> str:
    """One line of output, cleaned, newlines removed, cut to `limit` characters."""
    text = clean_text(data).replace("\n", " ")
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]} [... {cut} more characters cut]"
    return text
