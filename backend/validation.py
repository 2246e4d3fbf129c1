"""Checks on what users type: names, hosts, ports, key files; and free text made inert.

One rule holds at every boundary where text enters: a name (of a worker, pool,
environment, runbook, step, variable) must be visible characters only, and is refused
with a sentence otherwise; free text (descriptions, instructions, notes, reasons) is
cleaned of escape sequences and control characters on the way in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import unicodedata
from pathlib import Path

import asyncssh

from backend.errors import InvalidInput
from wire.text import clean_line, clean_text

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


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


def worker_name(value: str) -> str:
    return name(value, "Worker name", spaces=False)


def pool_name(value: str) -> str:
    return name(value, "Pool name")


def environment_name(value: str) -> str:
    return name(value, "Environment name")


def host(value: str) -> str:
    value = (value or "").strip()
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(candidate))
    labels = candidate.rstrip(".").split(".")
    if candidate and len(candidate) <= 253 and all(_HOST_LABEL.match(label) for label in labels):
        return candidate
    raise InvalidInput(f"Host {value!r} is not a valid host name or IP address.")


def port(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InvalidInput(f"Port {value!r} is not a number between 1 and 65535.")
    return value


def capacity(value: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidInput(f"Capacity {value!r} is not a number of slots between 1 and 1000.")
    return value


def user(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return name(value, "User", spaces=False, limit=64)


def key_file(path: str | None) -> str | None:
    """Return the absolute path of a readable, unencrypted private key, or refuse it."""
    if not path:
        return None
    resolved = Path(os.path.expanduser(path)).absolute()
    if not resolved.exists():
        raise InvalidInput(f"Key file {resolved} does not exist.")
    if not resolved.is_file():
        raise InvalidInput(f"Key file {resolved} is not a file.")
    try:
        asyncssh.read_private_key(resolved)
    except PermissionError:
        raise InvalidInput(f"Key file {resolved} cannot be read by the server's account.") from None
    except asyncssh.KeyEncryptionError:
        raise InvalidInput(
            f"Key file {resolved} is protected by a passphrase; load it into ssh-agent and "
            "add the worker with --agent instead."
        ) from None
    except (asyncssh.KeyImportError, ValueError, OSError):
        raise InvalidInput(f"Key file {resolved} is not an SSH private key.") from None
    return str(resolved)
