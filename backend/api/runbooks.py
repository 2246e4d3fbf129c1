"""Routes for runbooks and environments."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from backend.api.deps import ActorDep, BackendDep, need
from backend.errors import Conflict, InvalidInput
from backend.runs import launch, runbooks
from wire.runbook import (
    RunbookDef,
    RunbookError,
    RunbookImport,
    RunbookSummary,
    RunbookUpload,
    parse_toml,
    to_toml,
)
from wire.runs import Environment, EnvironmentChange, EnvironmentCreate

router = APIRouter(prefix="/api", tags=["runbooks"])


@router.get("/runbooks", dependencies=[need("view")], response_model=list[RunbookSummary])
async def list_runbooks(backend: BackendDep) -> list[dict[str, Any]]:
    return await asyncio.to_thread(runbooks.list_all, backend.store)


@router.post("/runbooks", dependencies=[need("admin")], status_code=201, response_model=RunbookDef)
async def import_runbook(body: RunbookUpload, backend: BackendDep,
                         actor: ActorDep) -> dict[str, Any]:
    definition = parse_toml(body.toml, body.source)
    if body.replaces is not None and definition.name != body.replaces and \
            definition.name in {b["name"] for b in await asyncio.to_thread(
                runbooks.list_all, backend.store)}:
        kept = f" ({body.replaces!r} stays as it was)" if body.replaces else ""
        raise Conflict(f"A runbook named {definition.name!r} already exists: give this one "
                       f"another name{kept}, or edit that one.")
    saved = await asyncio.to_thread(runbooks.save, backend.store, definition, actor)
    await backend.changed("runbook", [definition.name])
    return saved


@router.post("/runbooks/import", dependencies=[need("admin")],
             status_code=201, response_model=list[RunbookDef])
async def import_runbooks(body: RunbookImport, backend: BackendDep,
                          actor: ActorDep) -> list[dict[str, Any]]:
    """Several runbook files at once: every one is checked first, then all are saved in
    one transaction, or none when any is refused (each refusal is named)."""
    if not body.files:
        raise InvalidInput("Give at least one runbook file to import.")
    definitions, refusals, sources = [], [], {}
    for upload in body.files:
        try:
            definition = parse_toml(upload.toml, upload.source)
        except RunbookError as exc:
            refusals.append(str(exc))
            continue
        if definition.name in sources:
            refusals.append(f"{upload.source}: name: runbook {definition.name!r} is also "
                            f"defined by {sources[definition.name]}.")
        sources[definition.name] = upload.source
        definitions.append(definition)
    if refusals:
        raise InvalidInput(" ".join(refusals) + (" Nothing was imported." if
                                                  len(body.files) > 1 else ""))
    saved = await asyncio.to_thread(runbooks.save_all, backend.store, definitions, actor)
    await backend.changed("runbook", [d.name for d in definitions])
    return saved


@router.get("/runbooks/{name:name}/export", dependencies=[need("view")],
            response_class=PlainTextResponse)
async def export_runbook(name: str, backend: BackendDep) -> str:
    return to_toml(await asyncio.to_thread(runbooks.get, backend.store, name))


@router.get("/runbooks/{name:name}", dependencies=[need("view")], response_model=RunbookDef)
async def show_runbook(name: str, backend: BackendDep) -> dict[str, Any]:
    return runbooks.public(await asyncio.to_thread(runbooks.get, backend.store, name))


@router.delete("/runbooks/{name:name}", dependencies=[need("admin")],
               status_code=204, response_class=Response)
async def remove_runbook(name: str, backend: BackendDep, actor: ActorDep) -> None:
    await asyncio.to_thread(runbooks.remove, backend.store, name, actor)
    await backend.changed("runbook", [name])


@router.get("/environments", dependencies=[need("view")], response_model=list[Environment])
async def list_environments(backend: BackendDep) -> list[dict[str, Any]]:
    return await asyncio.to_thread(launch.environment_rows, backend.store)


@router.post("/environments", dependencies=[need("admin")],
             status_code=201, response_model=Environment)
async def add_environment(body: EnvironmentCreate, backend: BackendDep,
                          actor: ActorDep) -> dict[str, Any]:
    created = await asyncio.to_thread(launch.add_environment, backend.store, body.name, actor,
                                      body.four_eyes)
    await backend.changed("environment", [created["name"]])
    return created


@router.patch("/environments/{name:name}", dependencies=[need("admin")],
              response_model=Environment)
async def change_environment(name: str, body: EnvironmentChange, backend: BackendDep,
                             actor: ActorDep) -> dict[str, Any]:
    """Four eyes on or off: every launch and manual step there needs another person's
    approval."""
    changed = await asyncio.to_thread(launch.set_four_eyes, backend.store, name,
                                      body.four_eyes, actor)
    await backend.changed("environment", [name])
    return changed
