"""Routes for people, their grants and their tokens, and who is asking."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from backend.api.deps import LARGEST, ActorDep, BackendDep, WhoDep, need
from backend.people import directory
from wire.people import (
    Grant,
    Person,
    PersonChange,
    PersonCreate,
    Token,
    TokenCreate,
    TokenCreated,
    Whoami,
)

router = APIRouter(prefix="/api", tags=["people"])
TokenId = Annotated[int, Path(ge=1, le=LARGEST, description="The token's number.")]


@router.get("/whoami", response_model=Whoami, dependencies=[need(None)])
async def whoami(who: WhoDep) -> dict[str, Any]:
    """Who the server takes you for, and what you may do (somewhere)."""
    return who.public()


@router.get("/people", response_model=list[Person], dependencies=[need("view")])
async def list_people(backend: BackendDep) -> list[dict[str, Any]]:
    return await asyncio.to_thread(directory.list_people, backend.store,
                                   backend.access.account)


@router.post("/people", status_code=201, response_model=Person, dependencies=[need("admin")])
async def add_person(body: PersonCreate, backend: BackendDep, actor: ActorDep
                     ) -> dict[str, Any]:
    await asyncio.to_thread(directory.add_person, backend.store, body.name,
                            backend.access.account, actor, body.os_user)
    await backend.changed("people")
    return await asyncio.to_thread(directory.get_person, backend.store, body.name.strip(),
                                   backend.access.account)


@router.get("/people/{name:name}", response_model=Person, dependencies=[need("view")])
async def show_person(name: str, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(directory.get_person, backend.store, name,
                                   backend.access.account)


@router.patch("/people/{name:name}", response_model=Person, dependencies=[need("admin")])
async def change_person(name: str, body: PersonChange, backend: BackendDep, actor: ActorDep
                        ) -> dict[str, Any]:
    """Map a person to an account of the server's host, or to none."""
    await asyncio.to_thread(directory.set_os_user, backend.store, name, body.os_user, actor,
                            backend.access.account)
    await backend.changed("people")
    return await asyncio.to_thread(directory.get_person, backend.store, name,
                                   backend.access.account)


@router.delete("/people/{name:name}", status_code=204, response_class=Response,
               dependencies=[need("admin")])
async def remove_person(name: str, backend: BackendDep, actor: ActorDep) -> None:
    await asyncio.to_thread(directory.remove_person, backend.store, name, actor,
                            backend.access.account)
    await backend.changed("people")


@router.post("/people/{name:name}/grants", response_model=Person,
             dependencies=[need("admin")])
async def grant(name: str, body: Grant, backend: BackendDep, actor: ActorDep
                ) -> dict[str, Any]:
    """Give a role, everywhere or in the environments named."""
    await asyncio.to_thread(directory.grant, backend.store, name, body.role,
                            body.environments, actor, backend.access.account)
    await backend.changed("people")
    return await asyncio.to_thread(directory.get_person, backend.store, name,
                                   backend.access.account)


@router.post("/people/{name:name}/revoke", response_model=Person,
             dependencies=[need("admin")])
async def revoke(name: str, body: Grant, backend: BackendDep, actor: ActorDep
                 ) -> dict[str, Any]:
    """Take a role back, everywhere or in the environments named."""
    await asyncio.to_thread(directory.revoke, backend.store, name, body.role,
                            body.environments, actor, backend.access.account)
    await backend.changed("people")
    return await asyncio.to_thread(directory.get_person, backend.store, name,
                                   backend.access.account)


@router.post("/tokens", status_code=201, response_model=TokenCreated,
             dependencies=[need(None)])
async def create_token(body: TokenCreate, backend: BackendDep, who: WhoDep,
                       actor: ActorDep) -> dict[str, Any]:
    """A new token, shown this once: your own, or (as admin) anyone's."""
    person = body.person or who.name
    if person != who.name:
        who.require("admin")
    created = await asyncio.to_thread(directory.create_token, backend.store, person,
                                      body.label, body.expires_s, actor)
    await backend.changed("people")
    return created


@router.get("/tokens", response_model=list[Token], dependencies=[need(None)])
async def list_tokens(backend: BackendDep, who: WhoDep) -> list[dict[str, Any]]:
    """Your tokens; an admin sees everyone's."""
    return await asyncio.to_thread(directory.list_tokens, backend.store,
                                   None if who.permits("admin") else who.name)


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response,
               dependencies=[need(None)])
async def revoke_token(token_id: TokenId, backend: BackendDep, who: WhoDep,
                       actor: ActorDep) -> None:
    """Revoke one of your tokens (an admin, anyone's): it stops working at once."""
    owner = await asyncio.to_thread(directory.token_owner, backend.store, token_id)
    if owner != who.name:
        who.require("admin")
    await asyncio.to_thread(directory.revoke_token, backend.store, token_id, actor)
    await backend.changed("people")
