"""Ansible inventories as Ansible reads them: groups, hosts and variables, resolved into
workers. The INI and YAML readers (ansible_ini, ansible_yaml) fill this model."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .common import (
    InventoryError,
    WorkerSpec,
    _check_name,
    _check_word,
    _parse_key_path,
    _parse_port,
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
    return WorkerSpec(name=alias, host=host, port=port, user=user, key_path=key,
                      pools=tuple(pools))


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
