"""The advisor's word on execution containers (../shared/seed/worker-configuration.md):
"Whenever possible leverage execution containers for workers to limit the amount of
software to install and maintain on the workers."

Two findings: a pool where runbooks run steps in an image while some members have no
container engine that answers (those steps fail there), and a pool whose members run
different systems, where steps in an image would behave the same on each.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlmodel import select

from backend.store.db import Store
from backend.store.models import DEFAULT_POOL, Pool, PoolMember, Runbook, Worker
from backend.store.sql import json_text
from wire.runbook import RunbookDef

CRITICAL, WARNING = "critical", "warning"


def _pools_of(definition: RunbookDef) -> dict[str, list[str]]:
    """The pools each container step of a runbook may run in (every environment's), to
    the steps that do."""
    pools: dict[str, list[str]] = defaultdict(list)
    for step in definition.steps:
        if not step.container or step.manual is not None:
            continue
        if step.pool is None:
            names = [DEFAULT_POOL]
        elif step.pool in definition.pools:
            names = sorted(set(definition.pools[step.pool].values()))
        else:
            names = [step.pool]
        for name in names:
            pools[name].append(f"{definition.name!r}, step {step.name!r}")
    return pools


def findings(store: Store) -> list[dict[str, Any]]:
    """Each pool that needs a word: {check, severity, pool, finding, advice}."""
    with store.read() as session:
        definitions = [RunbookDef.model_validate_json(text) for text in
                       session.exec(select(Runbook.definition)).all()]
        # Two facts of every enabled member, taken out of their JSON by the database: the
        # advisor reads the whole fleet on each pass, and parsing ten thousand facts in
        # Python would hold the interpreter that answers every console meanwhile.
        rows = session.exec(
            select(Pool.name, Worker.name, json_text(Worker.facts, "os"),
                   json_text(Worker.facts, "container_engine"))
            .join(PoolMember, PoolMember.pool_id == Pool.id)
            .join(Worker, Worker.id == PoolMember.worker_id)
            .where(Worker.enabled)).all()
    members: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for pool, worker, system, engine in rows:
        members[pool].append((worker, {"os": system, "container_engine": engine}))
    uses: dict[str, list[str]] = defaultdict(list)
    for definition in definitions:
        for pool, steps in _pools_of(definition).items():
            uses[pool] += steps
    result = []
    for pool, steps in sorted(uses.items()):
        # Read and found none ("" is a check's "none answers"; absent: not read yet).
        without = sorted(name for name, facts in members.get(pool, ())
                         if facts.get("container_engine") == "")
        if not without:
            continue
        every = len(without) == len(members[pool])
        result.append({
            "check": "container-engine", "severity": CRITICAL if every else WARNING,
            "pool": pool,
            "finding": f"Pool {pool!r} runs steps in a container image ({_some(steps)}), "
                       f"and {_some(without)} {'has' if len(without) == 1 else 'have'} no "
                       "container engine that answers.",
            "advice": "A step in an image fails on a worker without one: install podman "
                      "(or docker with its daemon running) there, or take "
                      f"{'it' if len(without) == 1 else 'them'} out of the pool."})
    for pool, found in sorted(members.items()):
        systems = defaultdict(list)
        for name, facts in found:
            if facts.get("os"):
                systems[facts["os"]].append(name)
        if len(systems) > 1 and pool not in uses:
            said = "; ".join(f"{system} on {len(names)}"
                             for system, names in sorted(systems.items()))
            result.append({
                "check": "container-suggested", "severity": WARNING, "pool": pool,
                "finding": f"The members of pool {pool!r} run different systems ({said}).",
                "advice": "A step may find other tools, versions and paths on each: run "
                          "its steps in a container image (`container = \"IMAGE\"` in the "
                          "runbook) so that every worker gives them the same software."})
    return result


def _some(names: list[str], shown: int = 3) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
