"""What every route needs: the running backend and who is asking."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response

from backend.fleet.validation import free_text
from backend.store.db import for_client
from wire import jsontext

if TYPE_CHECKING:
    from backend.core import Backend
    from backend.people.access import Principal


# Dependencies are coroutines: FastAPI runs a plain function in a worker thread, a hop
# per request for what is an attribute read.
async def get_backend(request: Request) -> Backend:
    return request.app.state.backend


async def get_principal(request: Request) -> Principal:
    return request.state.principal


async def get_actor(request: Request) -> str:
    # Who asked, as the authentication found them (never what a client says it is).
    return free_text(request.state.principal.actor, 100, one_line=True)


class Need:
    """A route's permission (None: anyone known may call it), checked before it runs;
    tests/test_layout.py fails on a route without one."""

    def __init__(self, permission: str | None) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> None:
        if self.permission is not None:
            request.state.principal.require(self.permission)


def need(permission: str | None) -> Any:
    """`dependencies=[need("view")]`: what a route needs. For what acts on a run the
    route checks again against the run's environment (WhoDep.require)."""
    return Depends(Need(permission))


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
WhoDep = Annotated["Principal", Depends(get_principal)]


class Watch:
    """For a stream that stays open: ends it within WATCH_S of its principal's token
    being revoked (or their person removed, or their grants no longer allowing it)."""

    WATCH_S = 1.0

    def __init__(self, access: Any, principal: Principal, permission: str) -> None:
        self.access = access
        self.principal = principal
        self.permission = permission
        # Not the generation of now: people may have changed since the request was let
        # in (a token revoked, an account unmapped, while its snapshot was being made),
        # so the first look always asks.
        self.seen = -1
        self.last_beat = time.monotonic()

    def wait(self, heartbeat_s: float) -> float:
        """How long the stream may wait for news before looking again: a person's stream
        (by token or by OS account) looks every WATCH_S even when nothing happens."""
        return heartbeat_s if self.principal.builtin else self.WATCH_S

    async def allowed(self) -> bool:
        if self.access.generation == self.seen:
            return True
        self.seen = self.access.generation
        return await self.access.still(self.principal, self.permission)

    def heartbeat_due(self, heartbeat_s: float) -> bool:
        now = time.monotonic()
        if now - self.last_beat < heartbeat_s:
            return False
        self.last_beat = now
        return True
