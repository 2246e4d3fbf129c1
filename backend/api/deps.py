"""What every route needs: the running backend and who is asking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Path, Query, Request
from fastapi.responses import Response

from backend.fleet.validation import free_text
from backend.store.db import for_client
from wire import jsontext

if TYPE_CHECKING:
    from backend.core import Backend


def get_backend(request: Request) -> Backend:
    return request.app.state.backend


def get_actor(x_workdeck_actor: Annotated[str | None, Header()] = None) -> str:
    # Clients say which operator they act for; the audit log records it, cleaned.
    return free_text(x_workdeck_actor, 100, one_line=True) or "api"


async def encoded(data: Any, status_code: int = 200) -> Response:
    """An answer as big as the fleet (ten thousand workers), encoded in a thread: on the
    event loop it would stall every console for a good part of a second. (A Response
    bypasses the route's own status, so a 201 is given here.)"""
    body = await for_client(lambda: jsontext.dumps(data))
    return Response(body, status_code=status_code, media_type="application/json")


BackendDep = Annotated["Backend", Depends(get_backend)]
# Numbers the store can hold: a larger one is refused with a sentence, never passed to
# SQLite to overflow (2**53: what every JSON reader keeps exact).
LARGEST = 2**53
RunId = Annotated[int, Path(ge=1, le=LARGEST, description="The run's number.")]
LineNumber = Annotated[int, Query(ge=0, le=LARGEST, description="A line number in the log.")]
Count = Annotated[int, Query(ge=0, le=LARGEST)]
ActorDep = Annotated[str, Depends(get_actor)]
