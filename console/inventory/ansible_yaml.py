"""Parse Ansible YAML inventories, with line numbers in every refusal and Ansible's
!unsafe and !vault tags understood."""

from collections.abc import Iterator
from typing import Any

import yaml

from .ansible import (
    MAX_DEPTH,
    _build_workers,
    _describe,
    _Inventory,
    _Value,
    _Vaulted,
)
from .common import (
    InventoryError,
    WorkerSpec,
    _check_name,
    _expand_ranges,
    _split_port,
)


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
