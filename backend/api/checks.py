"""Routes for health checks now, and for the machine policy that schedules them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from backend import fleet
from backend.api.deps import ActorDep, BackendDep, encoded, need
from backend.errors import NotFound
from wire.server import CheckRequest, Policy
from wire.workers import Worker

router = APIRouter(prefix="/api", tags=["checks"])


@router.post("/checks", dependencies=[need("check")], response_model=list[Worker])
async def check_now(body: CheckRequest, backend: BackendDep) -> Response:
    """Check the chosen workers (every worker when none is named) and return them."""
    names = None
    if body.workers or body.pools:
        workers = await asyncio.to_thread(fleet.list_workers, backend.store)
        known = {w["name"] for w in workers}
        known_pools = {p for w in workers for p in w["pools"]}
        known_pools |= {p["name"] for p in await asyncio.to_thread(fleet.list_pools,
                                                                    backend.store)}
        for name in body.workers:
            if name not in known:
                raise NotFound(f"No worker is named {name!r}.")
        for pool in body.pools:
            if pool not in known_pools:
                raise NotFound(f"No pool is named {pool!r}.")
        names = sorted(set(body.workers) | {
            w["name"] for w in workers if set(w["pools"]) & set(body.pools)})
        if not names:
            return await encoded([])
    return await encoded(await backend.checker.check_now(names))


@router.get("/policy", dependencies=[need("view")])
async def get_policy(backend: BackendDep) -> Policy:
    return await asyncio.to_thread(fleet.get_policy, backend.store)


@router.put("/policy", dependencies=[need("admin")])
async def set_policy(policy: Policy, backend: BackendDep, actor: ActorDep) -> Policy:
    await asyncio.to_thread(fleet.set_policy, backend.store, policy, actor)
    await backend.changed("policy")
    return policy
