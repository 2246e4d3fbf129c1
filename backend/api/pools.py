"""Routes for worker pools: list, add, show."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from backend import fleet
from backend.api.deps import ActorDep, BackendDep
from backend.schemas import PoolCreate

router = APIRouter(prefix="/api/pools", tags=["pools"])


@router.get("")
async def list_pools(backend: BackendDep) -> list[dict[str, Any]]:
    return await asyncio.to_thread(fleet.list_pools, backend.store)


@router.post("", status_code=201)
async def add_pool(body: PoolCreate, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    pool = await asyncio.to_thread(fleet.add_pool, backend.store, body.name, body.description,
                                   actor)
    backend.bus.publish("pool", pool["name"], pool)
    return pool


@router.get("/{name}")
async def show_pool(name: str, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(fleet.get_pool, backend.store, name)
