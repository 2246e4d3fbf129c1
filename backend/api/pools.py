"""Routes for worker pools: list, add, show (members, leases, queue, utilization history)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from backend import fleet
from backend.api.deps import ActorDep, BackendDep, encoded, need
from backend.fleet import provisioners, usage
from backend.runs.leases import leases_of
from backend.store.db import for_client
from wire.pools import Pool, PoolCreate, PoolDetail, PoolUpdate, ProvisionerSet

router = APIRouter(prefix="/api/pools", tags=["pools"])


@router.get("", dependencies=[need("view")], response_model=list[Pool])
async def list_pools(backend: BackendDep) -> Response:
    return await encoded(await for_client(lambda: fleet.list_pools(
        backend.store, backend.leases.queued_by_pool())))


@router.post("", dependencies=[need("admin")], status_code=201, response_model=Pool)
async def add_pool(body: PoolCreate, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    pool = await asyncio.to_thread(fleet.add_pool, backend.store, body.name, body.description,
                                   actor, body.engine)
    return (await backend.changed("pool", [pool["name"]]))[0]


@router.put("/{name:name}", dependencies=[need("admin")], response_model=Pool)
async def update_pool(name: str, body: PoolUpdate, backend: BackendDep,
                      actor: ActorDep) -> dict[str, Any]:
    pool = await asyncio.to_thread(fleet.describe_pool, backend.store, name, body.description,
                                   actor, body.engine)
    return (await backend.changed("pool", [pool["name"]]))[0]


@router.put("/{name:name}/provisioner", dependencies=[need("admin")], response_model=Pool)
async def set_provisioner(name: str, body: ProvisionerSet, backend: BackendDep,
                          actor: ActorDep) -> dict[str, Any]:
    """Make workers for this pool on demand with two commands on the server's host (its
    dynamic workers), or change how."""
    await asyncio.to_thread(provisioners.set_provisioner, backend.store, name, body, actor)
    return (await backend.changed("pool", [name]))[0]


@router.delete("/{name:name}/provisioner", dependencies=[need("admin")], response_model=Pool)
async def clear_provisioner(name: str, backend: BackendDep, actor: ActorDep
                            ) -> dict[str, Any]:
    """Stop making workers for this pool (once its dynamic workers are gone)."""
    await asyncio.to_thread(provisioners.clear_provisioner, backend.store, name, actor)
    return (await backend.changed("pool", [name]))[0]


@router.get("/{name:name}", dependencies=[need("view")], response_model=PoolDetail)
async def show_pool(name: str, backend: BackendDep,
                    history_s: Annotated[float, Query(ge=0, le=usage.KEEP_S)] = usage.HISTORY_S
                    ) -> dict[str, Any]:
    """The pool's figures, and what is behind them: each member with its slots in use,
    the leases held on its members, the steps queued for it, its utilization history
    ([[unix time, leased, capacity, queued], ...])."""

    def detail() -> dict[str, Any]:
        pool = fleet.get_pool(backend.store, name, backend.leases.queued_by_pool())
        pool["member_workers"] = [
            {k: w[k] for k in ("name", "status", "enabled", "draining", "capacity", "leased",
                               "reason", "dynamic", "leases")}
            for w in fleet.list_workers(backend.store, pool["members"])]
        pool["leases"] = leases_of(backend.store, name)
        pool["usage_history"] = usage.history(backend.store, name, history_s).get(name, [])
        pool["history"] = pool["usage_history"]  # its name of one release ago
        pool["queue"] = backend.leases.queue_of(name)
        return pool

    return await asyncio.to_thread(detail)
