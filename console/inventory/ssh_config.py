"""Parse OpenSSH client config files, turning each concrete Host alias into a worker."""

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .common import (
    InventoryError,
    WorkerSpec,
    _check_name,
    _check_word,
    _parse_key_path,
    _parse_port,
    _shlex_split,
)

# OpenSSH separates a keyword from its value by whitespace or a single "=".
_SSH_LINE = re.compile(r"([^\s=]+)(?:\s*=\s*|\s+)(.*)")


# --------------------------------------------------------------------------- OpenSSH ssh_config


@dataclass
class _SshBlock:
    patterns: list[str] | None  # None: the global section before the first Host line
    skip: bool = False
    settings: list[tuple[str, str, int]] = field(default_factory=list)


_SSH_USED = frozenset({"hostname", "port", "user", "identityfile"})


def parse_ssh_config(text: str, source: str) -> list[WorkerSpec]:
    """Parse an OpenSSH client config, turning each concrete Host alias into a worker."""
    blocks = [_SshBlock(patterns=None)]
    aliases: dict[str, int] = {}

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SSH_LINE.fullmatch(line)
        keyword, rest = (match.group(1), match.group(2)) if match else (line.rstrip("="), "")
        lowered = keyword.lower()
        if lowered == "host":
            patterns = _shlex_split(rest, source, lineno)
            if not patterns:
                raise InventoryError(source, "Host needs at least one pattern", lineno)
            blocks.append(_SshBlock(patterns=patterns))
            for pattern in patterns:
                if not pattern.startswith("!") and not any(ch in pattern for ch in "*?"):
                    _check_name(pattern, "host", source, lineno)
                    aliases.setdefault(pattern, lineno)
        elif lowered == "match":
            # Match criteria (exec, user, localuser, canonical, final...) depend on the machine
            # and moment ssh runs, so they cannot be judged from the file; its settings are skipped.
            blocks.append(_SshBlock(patterns=None, skip=True))
        elif lowered == "include":
            # Included files are resolved relative to ~/.ssh and may glob over files the user
            # never chose to import, so an import of this one file leaves them out.
            continue
        elif lowered in _SSH_USED:
            values = _shlex_split(rest, source, lineno)
            if len(values) != 1:
                what = "a value" if not values else "only one value"
                raise InventoryError(source, f"{keyword} takes {what}", lineno)
            if lowered == "port":
                # OpenSSH rejects a bad Port anywhere in the file, even in blocks that never apply.
                _parse_port(values[0], source, lineno)
            blocks[-1].settings.append((lowered, values[0], lineno))

    if not aliases:
        raise InventoryError(source, "lists no hosts")
    return [_ssh_worker(alias, blocks, source) for alias in aliases]


def _ssh_worker(alias: str, blocks: list[_SshBlock], source: str) -> WorkerSpec:
    settings: dict[str, tuple[str, int]] = {}
    for block in blocks:
        if block.skip:
            continue
        if block.patterns is not None and not _ssh_block_matches(block.patterns, alias):
            continue
        for keyword, value, lineno in block.settings:
            # OpenSSH keeps the first value it sees, so specific blocks go before "Host *".
            settings.setdefault(keyword, (value, lineno))

    host = alias
    if "hostname" in settings:
        value, lineno = settings["hostname"]
        host = _check_word(
            _expand_ssh_hostname(value, alias, source, lineno), "host", source, lineno
        )
    port = (
        _parse_port(settings["port"][0], source, settings["port"][1]) if "port" in settings else 22
    )
    user = None
    if "user" in settings:
        user = _check_word(settings["user"][0], "user", source, settings["user"][1])
    key = None
    if "identityfile" in settings:
        value, lineno = settings["identityfile"]
        # "IdentityFile none" is OpenSSH's way of saying "no key file".
        key = None if value.lower() == "none" else _parse_key_path(value, source, lineno)
    return WorkerSpec(name=alias, host=host, port=port, user=user, key_path=key)


def _ssh_block_matches(patterns: list[str], alias: str) -> bool:
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _ssh_glob(pattern[1:] if negated else pattern).fullmatch(alias):
            if negated:
                return False  # a matching negation vetoes the whole Host line
            matched = True
    return matched


@lru_cache(maxsize=256)
def _ssh_glob(pattern: str) -> re.Pattern[str]:
    # OpenSSH patterns know only * and ?; brackets are literal, unlike fnmatch. Host names are
    # compared case-insensitively because ssh lower-cases the name it is given.
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _expand_ssh_hostname(value: str, alias: str, source: str, lineno: int) -> str:
    def token(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(0) == "%h":
            return alias
        raise InventoryError(
            source,
            f'HostName "{value}" uses "{match.group(0)}", which workdeck cannot expand',
            lineno,
        )

    return re.sub(r"%.?", token, value)
