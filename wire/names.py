"""What a name may hold, and free text made inert: the one rule at every boundary where
text enters (a worker, pool, environment, runbook, step or variable name; a description,
instructions, a note). Pure, so that clients check as the server does."""

from __future__ import annotations

import unicodedata

from wire.errors import InvalidInput
from wire.text import clean_line, clean_text


def _invisible(ch: str) -> str | None:
    """Why `ch` may not be in a name (None: it may)."""
    category = unicodedata.category(ch)
    if category == "Cc":
        return "a control character"
    if category == "Cf":
        return "an invisible format character (such as a bidirectional override)"
    if category in ("Cs", "Co", "Cn"):
        return "a character that is not a visible letter or sign"
    if category in ("Zl", "Zp"):
        return "a line break"
    return None


def name(value: str | None, what: str, *, spaces: bool = True, limit: int = 100) -> str:
    """A name as typed, stripped; refused unless it is 1 to `limit` visible characters
    (and, with spaces=False, has no whitespace)."""
    text = (value or "").strip()
    if not text or len(text) > limit:
        raise InvalidInput(f"{what} {text!r} is not valid: use 1 to {limit} characters.")
    for ch in text:
        why = _invisible(ch)
        if why is None and not spaces and ch.isspace():
            raise InvalidInput(f"{what} {text!r} contains a space, which it may not hold.")
        if why is not None:
            raise InvalidInput(
                f"{what} {text!r} contains {why} (U+{ord(ch):04X}); names may hold only "
                "visible characters.")
    return text


def free_text(value: str | None, limit: int = 2000, *, one_line: bool = False) -> str:
    """Free text from outside (a description, instructions, a note), cleaned: no escape
    sequences, no control or invisible characters, at most `limit` characters."""
    if not value:
        return ""
    if one_line:
        return clean_line(value, limit).strip()
    text = clean_text(value).strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def script_text(value: str, what: str) -> str:
    """A script is run as written: control characters other than tab and newlines are
    refused rather than silently removed (write them as escapes, like \\033)."""
    for ch in value:
        if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r":
            raise InvalidInput(
                f"{what} contains the control character U+{ord(ch):04X}; write it as an "
                "escape in the script (for example \\033 for ESC).")
    return value
