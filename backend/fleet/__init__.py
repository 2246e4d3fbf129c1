"""The fleet in the store: workers, pools, settings and the audit log, each in its own
module, what is valid in them (validation), the recommendations they are held to
(advisor) and pools' utilization over time (usage). What the rest of the backend calls
of the first four is named here, as `fleet.list_workers`."""

from backend.fleet.audit import audit, iso, list_audit
from backend.fleet.pools import add_pool, describe_pool, get_pool, list_pools, pool_figures
from backend.fleet.settings import get_policy, get_setting, put_setting, set_policy
from backend.fleet.workers import (
    add_workers,
    default_actor,
    ensure_builtin,
    get_worker,
    list_workers,
    remove_worker,
    set_builtin_worker,
    set_draining,
    set_enabled,
    trust_host_key,
    update_worker,
    worker_count,
    worker_history,
    worker_public,
)

__all__ = [
    "add_pool", "add_workers", "audit", "default_actor", "describe_pool", "ensure_builtin",
    "get_policy", "get_pool", "get_setting", "get_worker", "iso", "list_audit",
    "list_pools", "list_workers", "pool_figures", "put_setting", "remove_worker",
    "set_builtin_worker", "set_draining", "set_enabled", "set_policy", "trust_host_key",
    "update_worker",
    "worker_count", "worker_history", "worker_public",
]
