"""The roles: each a fixed set of permissions (README, "People and roles"), and how a
person's grants are judged. Plain Python, without pydantic, so that the console can
judge its own keys without importing the models (console/typed.py says why)."""

from __future__ import annotations

from collections.abc import Iterable

# What each permission lets a person do.
PERMISSIONS = {
    "view": "see the fleet, pools, runbooks, runs and logs, the audit log (no secret "
            "values)",
    "launch": "launch runs",
    "decide": "answer a guided failure or step-through (retry, skip, abort, run)",
    "cancel": "cancel runs",
    "check": "check workers now",
    "drain": "drain and undrain workers",
    "approve": "approve or abort manual steps",
    "admin": "change workers, pools, host keys, the policy, settings, environments, "
             "runbooks, people and tokens",
}
# Judged against the run's environment.
SCOPED = frozenset({"launch", "decide", "cancel", "approve"})

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "launch", "decide", "cancel", "check", "drain"}),
    "approver": frozenset({"view", "approve"}),
    "admin": frozenset(PERMISSIONS),
}


def permits(grants: Iterable[tuple[str, str]], permission: str,
            environment: str | None = None) -> bool:
    """Whether (role, environment or "" for every one) grants allow `permission`: in
    `environment` for what acts on a run, in any environment when none is given."""
    return any(permission in ROLES.get(role, ()) and (
        environment is None or permission not in SCOPED or not where
        or where == environment) for role, where in grants)
