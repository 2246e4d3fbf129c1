"""What every route needs: the running backend and who is asking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request

from backend.validation import free_text

if TYPE_CHECKING:
    from backend.server import Backend


def get_backend(request: Request) -> Backend:
    return request.app.state.backend


def get_actor(x_workdeck_actor: Annotated[str | None, Header()] = None) -> str:
    # Clients say which operator they act for; the audit log records it, cleaned.
    return free_text(x_workdeck_actor, 100, one_line=True) or "api"


BackendDep = Annotated["Backend", Depends(get_backend)]
ActorDep = Annotated[str, Depends(get_actor)]
