"""Routes for workers: list, add, import, show, remove, enable, disable, drain, trust,
history."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from backend import fleet
from backend.api.deps import ActorDep, BackendDep, encoded, need
from backend.store.db import for_client
from wire.workers import (
    HealthRecord,
    TrustRequest,
    Worker,
    WorkerCreate,
    WorkerImport,
    WorkerUpdate,
)

# A worker name may hold "/": it travels %2F-quoted as one path segment ({name:name},
# backend/api/names.py), so "x%2Fhistory" is a worker and "x/history" the history of "x".
router = APIRouter(prefix="/api/workers", tags=["workers"])


@router.get("", dependencies=[need("view")], response_model=list[Worker])
async def list_workers(backend: BackendDep) -> Response:
    return await encoded(await for_client(fleet.list_workers, backend.store))


@router.post("", dependencies=[need("admin")], status_code=201, response_model=Worker)
async def add_worker(spec: WorkerCreate, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    # The name as stored (cleaned: "x\x1c" is "x"), not as sent: looked up as sent, a
    # name with a control character was added and then answered with a 500.
    names = await asyncio.to_thread(fleet.add_workers, backend.store, [spec], actor)
    return (await backend.changed("worker", names, check=True))[0]


@router.post("/import", dependencies=[need("admin")], status_code=201, response_model=list[Worker])
async def import_workers(body: WorkerImport, backend: BackendDep,
                         actor: ActorDep) -> Response:
    specs = [
        w.model_copy(update={
            "pools": sorted(set(w.pools) | set(body.pools)),
            "trust_host_key": w.trust_host_key or body.trust_host_key,
        })
        for w in body.workers
    ]
    names = await asyncio.to_thread(fleet.add_workers, backend.store, specs, actor)
    return await encoded(await backend.changed("worker", names), status_code=201)


@router.get("/{name:name}/history", dependencies=[need("view")], response_model=list[HealthRecord])
async def worker_history(name: str, backend: BackendDep) -> list[dict[str, Any]]:
    return await asyncio.to_thread(fleet.worker_history, backend.store, name)


@router.get("/{name:name}", dependencies=[need("view")], response_model=Worker)
async def show_worker(name: str, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(fleet.get_worker, backend.store, name)


@router.delete("/{name:name}", dependencies=[need("admin")],
               status_code=204, response_class=Response)
async def remove_worker(name: str, backend: BackendDep, actor: ActorDep) -> None:
    await asyncio.to_thread(fleet.remove_worker, backend.store, name, actor)
    await backend.changed("worker", [name])


@router.patch("/{name:name}", dependencies=[need("admin")], response_model=Worker)
async def update_worker(name: str, body: WorkerUpdate, backend: BackendDep,
                        actor: ActorDep) -> dict[str, Any]:
    """Change a worker's capacity or container engine."""
    await asyncio.to_thread(fleet.update_worker, backend.store, name, actor,
                            capacity=body.capacity, engine=body.engine)
    return (await backend.changed("worker", [name]))[0]


@router.post("/{name:name}/enable", dependencies=[need("admin")], response_model=Worker)
async def enable_worker(name: str, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    await asyncio.to_thread(fleet.set_enabled, backend.store, name, True, actor)
    return (await backend.changed("worker", [name], check=True))[0]


@router.post("/{name:name}/disable", dependencies=[need("admin")], response_model=Worker)
async def disable_worker(name: str, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    await asyncio.to_thread(fleet.set_enabled, backend.store, name, False, actor)
    return (await backend.changed("worker", [name]))[0]


@router.post("/{name:name}/drain", dependencies=[need("drain")], response_model=Worker)
async def drain_worker(name: str, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    await asyncio.to_thread(fleet.set_draining, backend.store, name, True, actor)
    return (await backend.changed("worker", [name]))[0]


@router.post("/{name:name}/undrain", dependencies=[need("drain")], response_model=Worker)
async def undrain_worker(name: str, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    await asyncio.to_thread(fleet.set_draining, backend.store, name, False, actor)
    return (await backend.changed("worker", [name]))[0]


@router.post("/{name:name}/trust", dependencies=[need("admin")], response_model=Worker)
async def trust_worker(name: str, body: TrustRequest, backend: BackendDep,
                       actor: ActorDep) -> dict[str, Any]:
    await asyncio.to_thread(fleet.trust_host_key, backend.store, name, body.fingerprint, actor)
    return (await backend.changed("worker", [name], check=True))[0]
