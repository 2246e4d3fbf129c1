"""The advisor: what in the fleet goes against the worker recommendations it is built on.

The recommendations (../shared/seed/worker-configuration.md): at least two workers per
pool, names that say where a worker is and what it is for, pools named for purpose,
location and environment, the built-in worker off once there are real workers, each
worker running under an account of its own, and execution containers (fleet.containers).
"""

from __future__ import annotations

import getpass
import re
from typing import Any

from sqlmodel import select

from backend import fleet
from backend.errors import InvalidInput
from backend.fleet import containers, validation
from backend.store.db import Store
from backend.store.models import BUILTIN_WORKER, Pool, Provisioner, Worker

# In the seed's spirit: `p-db-omaha-worker-01` is environment letter, purpose, location,
# "worker", number; `Azure Central US Production Worker Pool` ends in "Worker Pool".
DEFAULT_WORKER_PATTERN = r"[a-z]-[a-z0-9]+-[a-z0-9]+-worker-[0-9]{2,}"
DEFAULT_POOL_PATTERN = r"([A-Z0-9][A-Za-z0-9]*\s)+Worker Pool"

CRITICAL, WARNING = "critical", "warning"


def naming(store: Store) -> dict[str, str]:
    with store.read() as session:
        return {"worker_name_pattern": fleet.get_setting(session, "worker_name_pattern",
                                                         DEFAULT_WORKER_PATTERN),
                "pool_name_pattern": fleet.get_setting(session, "pool_name_pattern",
                                                       DEFAULT_POOL_PATTERN)}


def set_naming(store: Store, actor: str, *, worker: str | None = None,
               pool: str | None = None) -> None:
    changes = {"worker_name_pattern": worker, "pool_name_pattern": pool}
    with store.write() as session:
        for key, pattern in changes.items():
            if pattern is None:
                continue
            validation.name(pattern, key.replace("_", " ").capitalize(), limit=500)
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInput(f"{key.replace('_', ' ')} {pattern!r} is not a regular "
                                   f"expression: {exc}.") from None
            fleet.put_setting(session, key, pattern)
            fleet.audit(session, actor, "settings.update", key, pattern)


def _finding(check: str, severity: str, subject: str, name: str, finding: str,
             advice: str) -> dict[str, Any]:
    return {"check": check, "severity": severity, "subject": subject, "name": name,
            "finding": finding, "advice": advice}


def advise(store: Store, server_account: str | None = None) -> list[dict[str, Any]]:
    """Every finding, the most serious first."""
    server_account = server_account or getpass.getuser()
    patterns = naming(store)
    worker_pattern = re.compile(patterns["worker_name_pattern"])
    pool_pattern = re.compile(patterns["pool_name_pattern"])
    figures = fleet.pool_figures(store)
    with store.read() as session:
        builtin_on = fleet.get_setting(session, "builtin_worker", True)
        descriptions = dict(session.exec(select(Pool.name, Pool.description)).all())
        # Only what the advice needs: a big fleet is read whole on every pass.
        workers = [{"name": name, "user": user, "builtin": builtin, "dynamic": dynamic}
                   for name, user, builtin, dynamic in session.exec(
                       select(Worker.name, Worker.user, Worker.builtin,
                              Worker.dynamic)).all()]
        provisioned = {name: (most, state, note) for name, most, state, note in session.exec(
            select(Pool.name, Provisioner.max_workers, Provisioner.state, Provisioner.note)
            .join(Provisioner, Provisioner.pool_id == Pool.id)).all()}
    pools = [{"name": name, **figure} for name, figure in sorted(figures.items())]
    findings: list[dict[str, Any]] = []

    for pool in pools:
        name, healthy = pool["name"], pool["healthy_workers"]
        most, state, note = provisioned.get(name, (0, "", ""))
        if state == "failing":
            findings.append(_finding(
                "provisioner", CRITICAL, "pool", name,
                f"Pool {name!r} cannot make workers: {note}",
                "Its steps wait for workers that are not made: see `workdeck pool show` and "
                "the audit log, and mend the provisioner's commands (or the place they make "
                "workers in)."))
        if healthy < 2 and most < 2:  # a provisioner of two or more makes them on demand
            members = pool["workers"]
            findings.append(_finding(
                "pool-redundancy", CRITICAL if healthy == 0 else WARNING, "pool", name,
                f"Pool {name!r} has {healthy} healthy worker{'s' if healthy != 1 else ''} "
                f"({members} member{'s' if members != 1 else ''}).",
                "A pool needs at least two healthy workers so that one failing or being "
                "patched does not stop every step that runs there: add a worker to it or "
                "bring its workers back to health."))
        if not pool_pattern.fullmatch(name):
            findings.append(_finding(
                "pool-name", WARNING, "pool", name,
                f"Pool {name!r} does not follow the naming convention "
                f"({patterns['pool_name_pattern']}).",
                "Operators pick pools by name, so a name should say purpose, location and "
                "environment, like 'Azure Central US Production Worker Pool': rename it, or "
                "set your own pattern with `workdeck settings --pool-name-pattern`."))
        if not descriptions.get(name, "").strip():
            findings.append(_finding(
                "pool-description", WARNING, "pool", name,
                f"Pool {name!r} has no description.",
                "A description tells whoever targets the pool what its workers can reach and "
                "may do: give it one with `workdeck pool add --description` or in the "
                "console."))

    real = [w for w in workers if not w["builtin"]]
    if builtin_on and real:
        findings.append(_finding(
            "builtin-worker", WARNING, "fleet", BUILTIN_WORKER,
            f"The built-in worker is on beside {len(real)} real "
            f"worker{'s' if len(real) != 1 else ''}.",
            "It runs steps on the server itself, under the server's account and with its "
            "software: turn it off with `workdeck settings --builtin-worker off` once real "
            "workers do the work."))

    for worker in real:
        name = worker["name"]
        # A dynamic worker's name is Workdeck's, made from its pool's.
        if not worker["dynamic"] and not worker_pattern.fullmatch(name):
            findings.append(_finding(
                "worker-name", WARNING, "worker", name,
                f"Worker {name!r} does not follow the naming convention "
                f"({patterns['worker_name_pattern']}).",
                "A name like 'p-db-omaha-worker-01' says environment, purpose and location at "
                "a glance: re-add it under such a name, or set your own pattern with "
                "`workdeck settings --worker-name-pattern`."))
        user = worker["user"] or server_account
        if user == "root":
            findings.append(_finding(
                "worker-account", CRITICAL, "worker", name,
                f"Worker {name!r} logs in as root.",
                "Every step would run with full control of that machine: give the worker an "
                "account of its own with only the rights its steps need."))
        elif user == server_account:
            findings.append(_finding(
                "worker-account", WARNING, "worker", name,
                f"Worker {name!r} logs in as {user!r}, the account the server runs as.",
                "Steps on it would share the server's identity and access: give each worker "
                "an account of its own, scoped to what it may touch."))

    for found in containers.findings(store):
        findings.append(_finding(found["check"], found["severity"], "pool", found["pool"],
                                 found["finding"], found["advice"]))

    order = {CRITICAL: 0, WARNING: 1}
    findings.sort(key=lambda f: (order[f["severity"]], f["check"], f["name"].lower()))
    return findings


def summary(findings: list[dict[str, Any]]) -> dict[str, int]:
    return {"findings": len(findings),
            "critical": sum(1 for f in findings if f["severity"] == CRITICAL)}
