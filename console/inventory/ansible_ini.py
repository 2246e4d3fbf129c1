"""Parse Ansible INI inventories."""

import re

from .ansible import (
    _IMPLICIT_GROUPS,
    _build_workers,
    _Inventory,
    _Value,
)
from .common import (
    InventoryError,
    WorkerSpec,
    _expand_ranges,
    _shlex_split,
    _split_port,
)

_INI_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?")
_INI_GROUP_NAME = re.compile(r"([^:\]\s]+)\s*(?:[#;].*)?")


def parse_ansible_ini(text: str, source: str) -> list[WorkerSpec]:
    """Parse an Ansible INI inventory."""
    inv = _Inventory(source)
    group, kind = "ungrouped", "hosts"
    # Like Ansible, [g:vars] and children must name a group that has its own [g] or
    # [g:children] section somewhere; checked at the end because order does not matter.
    declared: set[str] = set(_IMPLICIT_GROUPS)
    vars_sections: list[tuple[str, int]] = []
    child_refs: list[tuple[str, str, int]] = []

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            group, kind = _ini_section(line, source, lineno)
            inv.group(group, lineno)
            if kind == "vars":
                vars_sections.append((group, lineno))
            else:
                declared.add(group)
        elif kind == "hosts":
            _ini_host_line(inv, group, line, source, lineno)
        elif kind == "vars":
            name, value = _ini_var_line(group, line, source, lineno)
            inv.group(group, lineno).vars[name] = _Value(value, lineno)
        else:
            match = _INI_GROUP_NAME.fullmatch(line)
            if match is None:
                raise InventoryError(
                    source,
                    f'expected one group name per line in [{group}:children], got "{line}"',
                    lineno,
                )
            child_refs.append((group, match.group(1), lineno))

    problems: list[tuple[int, str]] = []
    for name, lineno in vars_sections:
        if name not in declared:
            problems.append(
                (lineno, f'section "[{name}:vars]" is for group "{name}", which is never declared')
            )
    for parent, child, lineno in child_refs:
        if child not in declared:
            problems.append((lineno, f'child group "{child}" of "{parent}" is never declared'))
    if problems:
        lineno, reason = min(problems)
        raise InventoryError(source, reason, lineno)
    for parent, child, lineno in child_refs:
        inv.add_child(parent, child, lineno)
    return _build_workers(inv)


def _ini_section(line: str, source: str, lineno: int) -> tuple[str, str]:
    match = _INI_SECTION.fullmatch(line)
    if match is None:
        if "]" not in line:
            raise InventoryError(
                source, f'section header "{line}" is missing its closing "]"', lineno
            )
        raise InventoryError(
            source,
            f'section header "{line}" is malformed (group names cannot contain spaces or ":")',
            lineno,
        )
    name, kind = match.group(1), match.group(2) or "hosts"
    if kind not in ("hosts", "vars", "children"):
        raise InventoryError(
            source,
            f'section "[{name}:{kind}]" has unknown type "{kind}" (expected vars or children)',
            lineno,
        )
    return name, kind


def _ini_host_line(inv: _Inventory, group: str, line: str, source: str, lineno: int) -> None:
    tokens = _shlex_split(line, source, lineno)
    if not tokens:
        return
    pattern, *assignments = tokens
    hostvars: dict[str, _Value] = {}
    pattern, port = _split_port(pattern)
    if port is not None:
        hostvars["ansible_port"] = _Value(port, lineno)
    for token in assignments:
        key, sep, value = token.partition("=")
        if not sep:
            raise InventoryError(
                source, f'expected key=value after the host name, got "{token}"', lineno
            )
        if not key:
            raise InventoryError(source, f'"{token}" has no variable name before "="', lineno)
        hostvars[key] = _Value(value, lineno)
    for alias in _expand_ranges(pattern, source, lineno):
        inv.add_host(alias, group, hostvars, lineno)


def _ini_var_line(group: str, line: str, source: str, lineno: int) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
        raise InventoryError(source, f'expected key=value in [{group}:vars], got "{line}"', lineno)
    if not key:
        raise InventoryError(source, f'"{line}" has no variable name before "="', lineno)
    words = _shlex_split(value, source, lineno)
    # A single (possibly quoted) word is unquoted; longer free text is kept as written,
    # since only the connection variables matter here and they are single words.
    if len(words) == 1:
        return key, words[0]
    return key, value if words else ""


