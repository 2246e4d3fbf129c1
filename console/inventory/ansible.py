"""Parse Ansible INI and YAML inventories, resolving group and host variables as Ansible does."""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from .common import (
    InventoryError,
    WorkerSpec,
    _check_name,
    _check_word,
    _expand_ranges,
    _parse_key_path,
    _parse_port,
    _shlex_split,
    _split_port,
)

# --------------------------------------------------------------------------- Ansible model


@dataclass
class _Value:
    value: Any
    line: int | None


@dataclass
class _Group:
    vars: dict[str, _Value] = field(default_factory=dict)
    children: dict[str, int | None] = field(default_factory=dict)  # child name -> line


@dataclass
class _Host:
    vars: dict[str, _Value] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)


# Ansible's implicit groups: every host is in "all", so neither says anything about pools.
_IMPLICIT_GROUPS = frozenset({"all", "ungrouped"})

# Within one scope the current name beats the pre-2.0 ansible_ssh_* spelling.
_ANSIBLE_FIELDS: dict[str, tuple[str, ...]] = {
    "host": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
}


class _Vaulted:
    """Stands in for a !vault value: harmless unless workdeck actually needs it."""


# Bounds on what one file may expand to, whatever its aliases and ranges say: far past
# any real fleet, far short of what would stall the server.
MAX_HOSTS = 50_000
MAX_VISITS = 200_000  # group and host entries walked, aliases included
MAX_DEPTH = 64  # levels of children


class _Inventory:
    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: dict[str, _Group] = {name: _Group() for name in ("all", "ungrouped")}
        self.hosts: dict[str, _Host] = {}
        self.walked: set[tuple[str, int]] = set()  # (group, id(body)) already read
        self.visits = 0

    def visit(self, line: int | None) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise InventoryError(
                self.source, f"expands to more than {MAX_VISITS:,} group and host entries "
                "(YAML aliases that repeat groups?); split it or write the groups out", line)

    def group(self, name: str, line: int | None) -> _Group:
        if name not in self.groups:
            _check_name(name, "group", self.source, line)
            self.groups[name] = _Group()
        return self.groups[name]

    def add_host(
        self, alias: str, group: str, hostvars: dict[str, _Value], line: int | None
    ) -> None:
        _check_name(alias, "host", self.source, line)
        self.group(group, line)
        if alias not in self.hosts and len(self.hosts) >= MAX_HOSTS:
            raise InventoryError(self.source, f"lists more than {MAX_HOSTS:,} hosts", line)
        host = self.hosts.setdefault(alias, _Host())
        # A host listed in several places is one host; later variables win, as in Ansible.
        host.vars.update(hostvars)
        host.groups.add(group)

    def add_child(self, parent: str, child: str, line: int | None) -> None:
        if child == "all":
            raise InventoryError(self.source, f'group "all" cannot be a child of "{parent}"', line)
        if child == parent:
            raise InventoryError(self.source, f'group "{parent}" cannot be its own child', line)
        self.group(parent, line).children.setdefault(child, line)
        self.group(child, line)


def _build_workers(inv: _Inventory) -> list[WorkerSpec]:
    source = inv.source
    if not inv.hosts:
        raise InventoryError(source, "lists no hosts")

    parents: dict[str, set[str]] = {name: set() for name in inv.groups}
    for name, group in inv.groups.items():
        for child in group.children:
            parents[child].add(name)
    _check_cycles(inv)

    depth: dict[str, int] = {"all": 0}

    def depth_of(name: str) -> int:
        # Ansible orders group vars by depth below "all", so children override parents.
        if name not in depth:
            depth[name] = 1 + max((depth_of(parent) for parent in parents[name]), default=0)
        return depth[name]

    workers = []
    for alias, host in inv.hosts.items():
        member: set[str] = set()
        pending = list(host.groups)
        while pending:
            name = pending.pop()
            if name not in member:
                member.add(name)
                pending.extend(parents[name])
        member.discard("all")
        ordered = ["all", *sorted(member, key=lambda name: (depth_of(name), name))]
        scopes = [inv.groups[name].vars for name in ordered] + [host.vars]
        workers.append(_ansible_worker(alias, _resolve(scopes), member - _IMPLICIT_GROUPS, source))
    return workers


def _check_cycles(inv: _Inventory) -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for child, line in inv.groups[name].children.items():
            if child in path:
                loop = " -> ".join([*path[path.index(child) :], child])
                raise InventoryError(inv.source, f"group children form a loop ({loop})", line)
            if child not in done:
                visit(child, [*path, child])
        done.add(name)

    for name in list(inv.groups):
        if name not in done:
            visit(name, [name])


def _resolve(scopes: Iterable[dict[str, _Value]]) -> dict[str, tuple[str, _Value]]:
    chosen: dict[str, tuple[str, _Value]] = {}
    for scope in scopes:
        for fieldname, names in _ANSIBLE_FIELDS.items():
            for name in names:
                value = scope.get(name)
                # Ansible treats a variable set to null as not set at all.
                if value is not None and value.value is not None:
                    chosen[fieldname] = (name, value)
                    break
    return chosen


def _setting_text(varname: str, value: _Value, source: str) -> str:
    raw = value.value
    if isinstance(raw, _Vaulted):
        raise InventoryError(
            source,
            f"{varname} is encrypted with Ansible Vault, which workdeck cannot decrypt",
            value.line,
        )
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InventoryError(
            source, f"{varname} must be a plain value, not {_describe(raw)}", value.line
        )
    text = str(raw)
    # Templates need Ansible's full variable context, which an import does not have.
    if "{{" in text or "{%" in text:
        raise InventoryError(
            source,
            f'{varname} "{text}" is a Jinja template, which workdeck cannot evaluate',
            value.line,
        )
    return text


def _ansible_worker(
    alias: str, chosen: dict[str, tuple[str, _Value]], pools: set[str], source: str
) -> WorkerSpec:
    host, port, user, key = alias, 22, None, None
    if "host" in chosen:
        varname, value = chosen["host"]
        host = _check_word(_setting_text(varname, value, source), "host", source, value.line)
    if "port" in chosen:
        varname, value = chosen["port"]
        raw = value.value
        if isinstance(raw, (str, _Vaulted)):
            raw = _setting_text(varname, value, source)
        port = _parse_port(raw, source, value.line)
    if "user" in chosen:
        varname, value = chosen["user"]
        user = _check_word(_setting_text(varname, value, source), "user", source, value.line)
    if "key" in chosen:
        varname, value = chosen["key"]
        key = _parse_key_path(_setting_text(varname, value, source), source, value.line)
    return WorkerSpec(name=alias, host=host, port=port, user=user, key=key, pools=tuple(pools))


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f'the text "{value}"'
    return f"the {type(value).__name__} {value}"


# --------------------------------------------------------------------------- Ansible INI

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


# --------------------------------------------------------------------------- Ansible YAML


class _YamlMap(dict):  # type: ignore[type-arg]
    """A mapping that remembers where it and each of its keys start, for error messages."""

    line: int | None = None
    key_lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records line numbers and understands Ansible's !unsafe and !vault tags."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[_YamlMap]:
    data = _YamlMap()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    # Yield first so anchors referring back to this mapping resolve, as PyYAML itself does.
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _value_node in node.value:  # flattened by construct_mapping, so merges count
        data.key_lines.setdefault(loader.construct_object(key_node), key_node.start_mark.line + 1)


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # !unsafe only tells Ansible not to template the value; the value itself is ordinary.
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> _Vaulted:
    return _Vaulted()


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("!unsafe", _construct_unsafe)
_LineLoader.add_constructor("!vault", _construct_vault)


def _yaml_document(text: str) -> Any:
    # Same as yaml.load, spelled out so linters see no unsafe loader: _LineLoader is a SafeLoader.
    loader = _LineLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _load_yaml(text: str, source: str) -> Any:
    try:
        return _yaml_document(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "invalid YAML"
        raise InventoryError(
            source, f"YAML syntax error: {reason}", mark.line + 1 if mark else None
        ) from exc
    except yaml.YAMLError as exc:
        raise InventoryError(source, f"YAML syntax error: {exc}") from exc


def _key_line(mapping: Any, key: Any, default: int | None) -> int | None:
    lines = getattr(mapping, "key_lines", None)
    return lines.get(key, default) if lines else default


def _yaml_name(raw: Any, what: str, source: str, line: int | None) -> str:
    # YAML turns keys like "yes" or "2024-01-01" into non-strings; a name must be text.
    if raw is None:
        raise InventoryError(source, f"{what} name is empty", line)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise InventoryError(
            source, f"{what} name must be text, not {_describe(raw)} (quote it)", line
        )
    name = str(raw)
    _check_name(name, what, source, line)
    return name


def parse_ansible_yaml(text: str, source: str) -> list[WorkerSpec]:
    """Parse an Ansible YAML inventory."""
    data = _load_yaml(text, source)
    inv = _Inventory(source)
    if data is not None:
        if not isinstance(data, dict):
            raise InventoryError(
                source,
                f"a YAML inventory must be a mapping of group names, not {_describe(data)}",
                1,
            )
        for raw_name, body in data.items():
            _yaml_group(inv, raw_name, body, _key_line(data, raw_name, None), [])
    return _build_workers(inv)


def _yaml_group(
    inv: _Inventory, raw_name: Any, body: Any, line: int | None, active: list[int]
) -> str:
    source = inv.source
    name = _yaml_name(raw_name, "group", source, line)
    inv.group(name, line)
    inv.visit(line)
    if body is None:
        return name
    if (name, id(body)) in inv.walked:
        # The same group body again (a YAML alias): read once, or nested aliases would
        # multiply the work by each level.
        return name
    if len(active) >= MAX_DEPTH:
        raise InventoryError(source, f'group "{name}" is nested more than {MAX_DEPTH} levels '
                             "deep", line)
    if not isinstance(body, dict):
        raise InventoryError(
            source,
            f'group "{name}" must be a mapping of hosts, children and vars, not {_describe(body)}',
            line,
        )
    # YAML anchors can make a group contain itself; stop instead of recursing forever.
    if id(body) in active:
        raise InventoryError(source, f'group "{name}" contains itself through a YAML alias', line)
    active = [*active, id(body)]

    for key, value in body.items():
        key_line = _key_line(body, key, line)
        if key not in ("hosts", "children", "vars"):
            raise InventoryError(
                source,
                f'group "{name}" has unexpected key "{key}" (expected hosts, children or vars)',
                key_line,
            )
        if value is None:
            continue
        if key == "hosts" and isinstance(value, str):
            value = {value: None}  # Ansible accepts a single host name as a string
        if not isinstance(value, dict):
            raise InventoryError(
                source,
                f'"{key}" of group "{name}" must be a mapping, not {_describe(value)}',
                key_line,
            )
        for item, item_value in value.items():
            item_line = _key_line(value, item, key_line)
            if key == "vars":
                inv.group(name, line).vars[str(item)] = _Value(item_value, item_line)
            elif key == "children":
                child = _yaml_group(inv, item, item_value, item_line, active)
                inv.add_child(name, child, item_line)
            else:
                inv.visit(item_line)
                _yaml_host(inv, name, item, item_value, item_line)
    inv.walked.add((name, id(body)))
    return name


def _yaml_host(
    inv: _Inventory, group: str, raw_pattern: Any, hostvars: Any, line: int | None
) -> None:
    source = inv.source
    pattern, port = _split_port(_yaml_name(raw_pattern, "host", source, line))
    if hostvars is None:
        hostvars = {}
    if not isinstance(hostvars, dict):
        raise InventoryError(
            source,
            f'host "{pattern}" must map to its variables or be empty, not {_describe(hostvars)}',
            line,
        )
    values = {} if port is None else {"ansible_port": _Value(port, line)}
    for var, value in hostvars.items():
        values[str(var)] = _Value(value, _key_line(hostvars, var, line))
    for alias in _expand_ranges(pattern, source, line):
        inv.add_host(alias, group, values, line)
