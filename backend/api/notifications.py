"""Routes for notifications: list and show (with their deliveries), add, remove, and a
test sent now. Adding, removing and testing are an admin's: they send data out."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from backend.api.deps import ActorDep, BackendDep, WhoDep, need
from backend.notify import targets
from backend.store.db import for_client
from wire.notifications import DeliveryShown, Notification, NotificationRequest

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get("", dependencies=[need("view")], response_model=list[Notification])
async def list_notifications(backend: BackendDep) -> list[dict[str, Any]]:
    return await for_client(targets.list_all, backend.store, backend.vault)


@router.get("/{name:name}", dependencies=[need("view")], response_model=Notification)
async def show(name: str, backend: BackendDep) -> dict[str, Any]:
    return await for_client(targets.get, backend.store, backend.vault, name)


@router.post("", dependencies=[need("admin")], status_code=201, response_model=Notification)
async def add(body: NotificationRequest, backend: BackendDep,
              actor: ActorDep) -> dict[str, Any]:
    made = await asyncio.to_thread(
        targets.add, backend.store, backend.vault, name=body.name, url=body.url,
        format=body.format, events=body.events, environments_=body.environments,
        pools=body.pools, secret=body.secret, actor=actor)
    await backend.changed("notification", [made["name"]])
    return made


@router.delete("/{name:name}", dependencies=[need("admin")], status_code=204,
               response_class=Response)
async def remove(name: str, backend: BackendDep, actor: ActorDep) -> None:
    await asyncio.to_thread(targets.remove, backend.store, name, actor)
    await backend.changed("notification", [name])


@router.post("/{name:name}/test", dependencies=[need("admin")], response_model=DeliveryShown)
async def test(name: str, backend: BackendDep, who: WhoDep) -> dict[str, Any]:
    """Post a test event now and answer with what the receiver said (recorded with the
    notification's deliveries, not retried)."""
    return await backend.notifier.test(name, who.actor)
