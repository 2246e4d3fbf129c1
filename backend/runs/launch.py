"""Launching a run: the environment, the variables and the pools it resolves to, checked
whole before anything starts, and the plan a launch would follow now."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from backend import fleet
from backend.errors import Conflict, InvalidInput, NotFound
from backend.fleet import audit, validation
from backend.runs import runbooks
from backend.runs.leases import Leases
from backend.runs.logtext import MIN_MASKED
from backend.store.db import Store
from backend.store.models import DEFAULT_POOL, Environment, Pool
from wire.runbook import RunbookDef, Step
from wire.runs import LaunchRequest

MIN_SECRET = MIN_MASKED


def environments(store: Store) -> list[str]:
    return [env["name"] for env in environment_rows(store)]


def environment_rows(store: Store) -> list[dict[str, Any]]:
    """Every environment with what it asks of a launch."""
    with store.read() as session:
        return [{"name": env.name, "four_eyes": env.four_eyes} for env in session.exec(
            select(Environment).order_by(Environment.name)).all()]


def add_environment(store: Store, name: str, actor: str, four_eyes: bool = False
                    ) -> dict[str, Any]:
    name = validation.environment_name(name)
    with store.write() as session:
        if session.exec(select(Environment).where(Environment.name == name)).first():
            raise Conflict(f"An environment named {name!r} already exists.")
        session.add(Environment(name=name, four_eyes=four_eyes))
        audit(session, actor, "environment.add", name, "four eyes" if four_eyes else "")
    return {"name": name, "four_eyes": four_eyes}


def set_four_eyes(store: Store, name: str, four_eyes: bool, actor: str) -> dict[str, Any]:
    """Whether every launch and manual step in `name` needs another person's approval
    (runs already waiting keep the question they were asked)."""
    with store.write() as session:
        env = session.exec(select(Environment).where(Environment.name == name)).first()
        if env is None:
            raise NotFound(f"No environment is named {name!r}.")
        if env.four_eyes != four_eyes:
            env.four_eyes = four_eyes
            session.add(env)
            audit(session, actor, "environment.set", name,
                  "four eyes" if four_eyes else "no four eyes")
    return {"name": name, "four_eyes": four_eyes}


def resolve_pool(definition: RunbookDef, step: Step, environment: str) -> str:
    """The pool a step runs in: a pool variable for this environment, a pool name, or the
    default pool."""
    if step.pool is None:
        return DEFAULT_POOL
    if step.pool in definition.pools:
        scoped = definition.pools[step.pool]
        if environment not in scoped:
            raise InvalidInput(
                f"Step {step.name!r} uses the pool variable {step.pool!r}, which has no value "
                f"for {environment} (it has: {', '.join(scoped) or 'none'}).")
        return scoped[environment]
    return step.pool


def prepare(store: Store, request: LaunchRequest, *, missing: list[str] | None = None,
            definition: RunbookDef | None = None
            ) -> tuple[RunbookDef, str, dict[str, str], dict[str, str], list[str]]:
    """Validate a launch whole: (definition, environment, values, secrets, pools).

    With `missing` (a plan, while the values are still being typed), a variable with no
    value is named there instead of refusing the launch. `definition`: the runbook as a
    run had it (a rerun), not as it is now."""
    definition = definition or runbooks.get(store, request.runbook)
    known_envs = environments(store)
    environment = request.environment
    if environment is None:
        if len(known_envs) != 1:
            raise InvalidInput("Say which environment to run in: "
                               f"{', '.join(known_envs) or 'none is defined yet'}.")
        environment = known_envs[0]
    if environment not in known_envs:
        raise NotFound(f"No environment is named {environment!r} (known: "
                       f"{', '.join(known_envs) or 'none'}).")
    declared = {v.name: v for v in definition.variables}
    unknown = sorted(set(request.variables) - set(declared))
    if unknown:
        raise InvalidInput(f"Runbook {definition.name!r} has no variable {unknown[0]!r} "
                           f"(it has: {', '.join(declared) or 'none'}).")
    values: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for var in definition.variables:
        value = request.variables.get(var.name, var.default)
        if value is None and missing is not None:
            missing.append(var.name)
            continue
        if value is None:
            raise InvalidInput(f"Variable {var.name!r} needs a value.")
        if var.sensitive and len(value) < MIN_SECRET:
            raise InvalidInput(
                f"The sensitive variable {var.name!r} is shorter than {MIN_SECRET} "
                "characters: masking it would hide every such letter in the log and so "
                "reveal it; use a longer value.")
        (secrets if var.sensitive else values)[var.name] = value
    pools = []
    with store.read() as session:
        known_pools = set(session.exec(select(Pool.name)).all())
    for step in definition.steps:
        if step.manual is not None:
            pools.append("")
            continue
        pool = resolve_pool(definition, step, environment)
        if pool not in known_pools:
            raise InvalidInput(f"Step {step.name!r} runs in pool {pool!r}, which does not "
                               "exist.")
        shown = fleet.get_pool(store, pool)
        made = shown["provisioner"]
        if not shown["members"] and not (made and made["max"]):
            # A pool with a provisioner makes its workers when a step waits.
            raise InvalidInput(f"Step {step.name!r} runs in pool {pool!r}, which has no "
                               "workers.")
        pools.append(pool)
    return definition, environment, values, secrets, pools


def plan(store: Store, leases: Leases, request: LaunchRequest) -> dict[str, Any]:
    """What a launch would do now: each step's pool, the worker it would take, pool health."""
    missing: list[str] = []
    definition, environment, values, secrets, pools = prepare(store, request,
                                                              missing=missing)
    steps = []
    for step, pool in zip(definition.steps, pools, strict=True):
        entry: dict[str, Any] = {"name": step.name, "manual": step.manual is not None,
                                 "pool": pool, "run_on": step.run_on,
                                 "condition": step.condition}
        if pool:
            info = fleet.get_pool(store, pool, leases.queued_by_pool())
            if step.run_on == "all":
                would_take, would_skip = leases.every_member(pool)
                entry["would_skip"] = [{"worker": name, "why": why}
                                       for name, why in would_skip]
            else:
                would_take = [name for name in [leases.next_worker(pool)] if name]
            entry.update(healthy_workers=info["healthy_workers"], workers=info["workers"],
                         healthy=info["healthy_workers"],  # its name of one release ago
                         leased=info["leased"], capacity=info["capacity"],
                         queued=info["queued"], would_take=would_take)
        steps.append(entry)
    return {"runbook": definition.name, "environment": environment, "variables": values,
            "sensitive": sorted(secrets), "missing": missing, "steps": steps}
