"""Routes about the server itself: status, stop, settings, the advisor, the audit log."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from backend import fleet, nodes
from backend.api.deps import ActorDep, BackendDep, Count, need
from backend.fleet import advisor
from backend.store import retention
from backend.store.models import BUILTIN_WORKER
from wire.server import AuditEvent, Finding, ServerStatus, Settings, SettingsUpdate, Stopping

router = APIRouter(prefix="/api", tags=["server"])


@router.get("/server", dependencies=[need("view")], response_model=ServerStatus)
async def status(backend: BackendDep) -> dict[str, Any]:
    return backend.status()


@router.post("/server/stop", dependencies=[need("admin")], status_code=202, response_model=Stopping)
async def stop(backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    backend.request_stop(actor)
    return {"stopping": True}


@router.get("/settings", dependencies=[need("view")], response_model=Settings)
async def get_settings(backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(backend.settings)


@router.put("/settings", dependencies=[need("admin")], response_model=Settings)
async def put_settings(body: SettingsUpdate, backend: BackendDep,
                       actor: ActorDep) -> dict[str, Any]:
    if body.builtin_worker is not None:
        await asyncio.to_thread(fleet.set_builtin_worker, backend.store, body.builtin_worker,
                                actor)
        await backend.changed("worker", [BUILTIN_WORKER])
    if body.worker_name_pattern is not None or body.pool_name_pattern is not None:
        await asyncio.to_thread(advisor.set_naming, backend.store, actor,
                                worker=body.worker_name_pattern, pool=body.pool_name_pattern)
    kept = {"runs_days": body.keep_runs_days, "runs_gb": body.keep_runs_gb,
            "audit_days": body.keep_audit_days}
    if any(v is not None for v in kept.values()):
        current = await asyncio.to_thread(retention.get, backend.store)
        changed = current.model_copy(update={k: v for k, v in kept.items() if v is not None})
        await asyncio.to_thread(retention.put, backend.store, changed, actor)
    if body.node_heartbeat_s is not None or body.node_lease_s is not None:
        await asyncio.to_thread(nodes.set_timing, backend.store, actor,
                                heartbeat_s=body.node_heartbeat_s, lease_s=body.node_lease_s)
    await backend.changed("settings")
    return await asyncio.to_thread(backend.settings)


@router.get("/advice", dependencies=[need("view")], response_model=list[Finding])
async def advice(backend: BackendDep) -> list[dict[str, Any]]:
    """What in the fleet goes against the worker recommendations, the most serious first."""
    return await asyncio.to_thread(advisor.advise, backend.store)


@router.get("/audit", dependencies=[need("view")], response_model=list[AuditEvent])
async def audit(backend: BackendDep, limit: Count = 200) -> list[dict[str, Any]]:
    return await asyncio.to_thread(fleet.list_audit, backend.store, min(max(limit, 1), 10_000))
