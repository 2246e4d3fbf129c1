"""The worker and error types, plus the validation and host-range helpers every parser shares."""

import os
import re
import shlex
import string
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerSpec:
    """One SSH worker to register: its name, how to reach it and the pools it joins."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    key_path: str | None = None
    pools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Callers compare and dedupe workers, so the pool order must not depend on the file.
        object.__setattr__(self, "pools", tuple(sorted(set(self.pools))))


class InventoryError(ValueError):
    """One clear sentence naming the file, the line (when known) and what is wrong."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        # The parts stay in args so the exception pickles and callers can show them separately.
        super().__init__(source, reason, line)
        self.source = source
        self.reason = reason
        self.line = line

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source} line {self.line}"
        return f"{where}: {self.reason}"


# --------------------------------------------------------------------------- shared validation


def _show(value: str) -> str:
    # Quote like the rest of the messages, but make invisible characters visible.
    return f'"{value}"' if value.isprintable() else repr(value)


def _is_clean_word(value: str) -> bool:
    return bool(value) and value.isprintable() and not any(ch.isspace() for ch in value)


def _check_name(name: str, what: str, source: str, line: int | None) -> None:
    if not name:
        raise InventoryError(source, f"{what} name is empty", line)
    if not _is_clean_word(name):
        raise InventoryError(
            source, f"{what} name {_show(name)} contains whitespace or control characters", line
        )


def _check_word(value: str, what: str, source: str, line: int | None) -> str:
    if not value:
        raise InventoryError(source, f"{what} is empty", line)
    if not _is_clean_word(value):
        raise InventoryError(
            source, f"{what} {_show(value)} contains whitespace or control characters", line
        )
    return value


def _parse_port(value: Any, source: str, line: int | None) -> int:
    number: int | None = None
    # bool is an int subclass, and "ansible_port: yes" is a mistake, not port 1.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        number = int(value.strip())
    if number is None or not 1 <= number <= 65535:
        raise InventoryError(source, f'port "{value}" is not a number between 1 and 65535', line)
    return number


def _parse_key_path(value: str, source: str, line: int | None) -> str | None:
    if not value:
        return None
    # Spaces are legal in paths, but control characters only ever mean a broken file.
    if not value.isprintable():
        raise InventoryError(
            source, f"private key path {_show(value)} contains control characters", line
        )
    return os.path.expanduser(value)


def _shlex_split(text: str, source: str, lineno: int) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        raise InventoryError(source, f"unbalanced quote in {_show(text)}", lineno) from None


# --------------------------------------------------------------------------- host ranges

# One pattern may not explode into more workers than any sane fleet, whatever its ranges say.
_MAX_EXPANSION = 10_000

_RANGE = re.compile(r"\[([^\[\]]*)\]")


def _split_port(pattern: str) -> tuple[str, str | None]:
    """Split Ansible's "alias:port" shorthand, leaving ranges and IPv6 addresses alone."""
    head, sep, tail = pattern.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]+", tail):
        return pattern, None
    # The colon inside "web[1:3]" belongs to the range, not to a port.
    if head.count("[") != head.count("]"):
        return pattern, None
    # "fe80::1" has other colons outside brackets: it is an IPv6 address, not host:port.
    if ":" in _RANGE.sub("", head):
        return pattern, None
    return head, tail


def _expand_ranges(pattern: str, source: str, line: int | None) -> list[str]:
    """Expand Ansible host ranges like web[01:03] or db-[a:c] (with an optional :stride)."""
    if "[" not in pattern and "]" not in pattern:
        return [pattern]
    match = _RANGE.search(pattern)
    if match is None or "]" in pattern[: match.start()]:
        raise InventoryError(source, f'host pattern "{pattern}" has unbalanced "[" or "]"', line)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    values = _range_values(match.group(1), pattern, source, line)
    tails = _expand_ranges(tail, source, line)
    if len(values) * len(tails) > _MAX_EXPANSION:
        raise InventoryError(
            source, f'host pattern "{pattern}" expands to more than {_MAX_EXPANSION} hosts', line
        )
    return [head + value + rest for value in values for rest in tails]


def _range_values(body: str, pattern: str, source: str, line: int | None) -> list[str]:
    def bad(why: str) -> InventoryError:
        return InventoryError(
            source, f'host pattern "{pattern}" has a bad range "[{body}]": {why}', line
        )

    parts = body.split(":")
    if len(parts) not in (2, 3):
        raise bad("expected [start:end] or [start:end:step]")
    start, end = parts[0] or "0", parts[1]  # Ansible reads an empty start as 0
    step_text = parts[2] if len(parts) == 3 else "1"
    if not end:
        raise bad("the end is missing")
    if not re.fullmatch(r"[0-9]+", step_text) or int(step_text) == 0:
        raise bad("the step must be a positive whole number")
    step = int(step_text)

    if re.fullmatch(r"[0-9]+", start) and re.fullmatch(r"[0-9]+", end):
        first, last = int(start), int(end)
        if first > last:
            raise bad("the start is after the end")
        # A leading zero asks for zero padding, which only makes sense if both ends agree.
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        if width and len(end) != width:
            raise bad("zero-padded start and end must have the same number of digits")
        numbers = range(first, last + 1, step)
        if len(numbers) > _MAX_EXPANSION:
            raise bad(f"it expands to more than {_MAX_EXPANSION} hosts")
        return [str(number).zfill(width) for number in numbers]

    letters = string.ascii_letters
    if len(start) == 1 and len(end) == 1 and start in letters and end in letters:
        first, last = letters.index(start), letters.index(end)
        if first > last:
            raise bad("the start is after the end")
        return list(letters[first : last + 1 : step])

    raise bad("both ends must be numbers or single letters")
