"""Routes for schedules: list, show, add, pause or resume, remove. Whoever may launch in
an environment may schedule there; the launches are theirs, judged at each time."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from backend.api.deps import ActorDep, BackendDep, WhoDep, need
from backend.runs import schedules
from backend.store.db import for_client
from wire.schedules import Schedule, ScheduleRequest, ScheduleUpdate

router = APIRouter(prefix="/api/schedules", tags=["schedules"])


@router.get("", dependencies=[need("view")], response_model=list[Schedule])
async def list_schedules(backend: BackendDep, runbook: str | None = None
                         ) -> list[dict[str, Any]]:
    return await for_client(schedules.list_schedules, backend.store, runbook)


@router.get("/{name:name}", dependencies=[need("view")], response_model=Schedule)
async def show(name: str, backend: BackendDep) -> dict[str, Any]:
    return await for_client(schedules.get_schedule, backend.store, name)


@router.post("", dependencies=[need("launch")], status_code=201, response_model=Schedule)
async def add(body: ScheduleRequest, backend: BackendDep, who: WhoDep,
              actor: ActorDep) -> dict[str, Any]:
    who.require("launch", body.environment)
    made = await asyncio.to_thread(
        schedules.add_schedule, backend.store, backend.vault, name=body.name,
        runbook=body.runbook, environment=body.environment, cron=body.cron,
        timezone=body.timezone, variables=body.variables, overlap=body.overlap,
        missed=body.missed, person=who.name, actor=actor)
    await backend.changed("schedule", [made["name"]])
    return made


@router.patch("/{name:name}", dependencies=[need("launch")], response_model=Schedule)
async def update(name: str, body: ScheduleUpdate, backend: BackendDep, who: WhoDep,
                 actor: ActorDep) -> dict[str, Any]:
    who.require("launch", await asyncio.to_thread(schedules.schedule_environment,
                                                  backend.store, name))
    changed = await asyncio.to_thread(schedules.set_paused, backend.store, name,
                                      body.paused, actor)
    await backend.changed("schedule", [name])
    return changed


@router.delete("/{name:name}", dependencies=[need("launch")], status_code=204,
               response_class=Response)
async def remove(name: str, backend: BackendDep, who: WhoDep, actor: ActorDep) -> None:
    who.require("launch", await asyncio.to_thread(schedules.schedule_environment,
                                                  backend.store, name))
    await asyncio.to_thread(schedules.remove_schedule, backend.store, name, actor)
    await backend.changed("schedule", [name])
