"""Routes about the servers using the store: list them, drain or undrain one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import ActorDep, BackendDep, need
from backend.store.db import for_client
from wire.nodes import Node, NodeUpdate

router = APIRouter(prefix="/api/nodes", tags=["nodes"])


@router.get("", dependencies=[need("view")], response_model=list[Node])
async def list_nodes(backend: BackendDep) -> list[dict[str, Any]]:
    return await for_client(backend.nodes.list)


@router.patch("/{name}", dependencies=[need("admin")], response_model=Node)
async def update_node(name: str, body: NodeUpdate, backend: BackendDep,
                      actor: ActorDep) -> dict[str, Any]:
    return await backend.nodes.set_draining(name, body.draining, actor)
