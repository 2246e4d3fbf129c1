"""The HTTP application: the routes, the one error shape, the token over TCP, the
OpenAPI document, and the backend's parts started and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__, fleet, loopwatch
from backend.api import (
    checks,
    events,
    metrics,
    nodes,
    notifications,
    people,
    pools,
    recording,
    runbooks,
    runs,
    schedules,
    server,
    streams,
    workers,
)
from backend.api.limits import BodyLimit
from backend.api.names import KeepSlashes
from backend.errors import WorkdeckError
from backend.people.access import Principal
from backend.store.db import fault_of
from wire.errors import ErrorBody, code_for

if TYPE_CHECKING:
    from backend.core import Backend

log = logging.getLogger("workdeck.server")

STORE_THREADS = 3


def create_app(backend: Backend) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Few threads for the store: its writes queue for one lock anyway, and each busy
        # thread is one more the event loop waits behind for the GIL (the loop answers
        # every console; asyncio's default is the CPU count plus four).
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="store"))
        # With asyncio's debug mode on (PYTHONASYNCIODEBUG=1), callbacks slower than this
        # are logged, on the clock by asyncio and by their own CPU time by loopwatch: the
        # tests and bench/faults.py read the second.
        with contextlib.suppress(ValueError):
            loop.slow_callback_duration = float(os.environ.get("WORKDECK_SLOW_CALLBACK_S",
                                                               "0.1"))
        if loop.get_debug():
            loopwatch.install(loop.slow_callback_duration)
        backend.bus.seed("worker", {w["name"]: w for w in await asyncio.to_thread(
            fleet.list_workers, backend.store)})
        _settle_garbage_collector()
        tasks = [asyncio.create_task(start()) for start in backend.forever()]
        backend.runs.resume_waiting()
        try:
            yield
        finally:
            # Each stage's time is logged: a slow stop says where it was slow.
            stopping = time.monotonic()
            log.info("stopping: %d runs under way are interrupted", backend.runs.under_way())
            # Runs first, while SSH connections are still open: their steps are killed.
            with contextlib.suppress(Exception):
                await backend.runs.shutdown()
            runs_s = time.monotonic() - stopping
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            tasks_s = time.monotonic() - stopping - runs_s
            with contextlib.suppress(Exception):
                await backend.checker.flush()
            await backend.connections.close()
            with contextlib.suppress(Exception):  # a store gone: its heartbeat stops anyway
                await asyncio.to_thread(backend.nodes.stopped)
            log.info("stopped in %.2f s: runs %.2f s, background tasks %.2f s, checks and "
                     "connections %.2f s", time.monotonic() - stopping, runs_s, tasks_s,
                     time.monotonic() - stopping - runs_s - tasks_s)

    app = FastAPI(title="Workdeck", version=__version__, lifespan=lifespan)
    app.state.backend = backend

    backend.access.shared_token = backend.token
    app.add_middleware(Who, access=backend.access)
    routers = [m.router for m in (workers, pools, checks, events, server, runbooks, runs,
                                   people, nodes, schedules, notifications, metrics)]
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimit)
    app.add_middleware(KeepSlashes)  # outermost: every route sees names whole
    if (record_to := recording.wanted()) is not None:
        app.add_middleware(recording.AnswerRecorder, path=record_to)

    # One error shape everywhere (wire.errors.ErrorBody): a sentence and a code.
    @app.exception_handler(WorkdeckError)
    async def _refused(_request: Request, exc: WorkdeckError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "code": exc.code},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse(
            {"detail": f"Invalid {where}: {first.get('msg', 'not understood')}.",
             "code": "invalid"},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such route: see /docs for the API."
        elif exc.status_code == 405:
            detail = "This route does not take that method: see /docs for the API."
        return JSONResponse({"detail": detail, "code": code_for(exc.status_code)},
                            status_code=exc.status_code, headers=exc.headers)

    # Its own handler (not the one for every Exception, after which Starlette logs the
    # traceback again): the store says it once, and the top bar shows it.
    @app.exception_handler(DBAPIError)
    async def _store(_request: Request, exc: DBAPIError) -> JSONResponse:
        fault = fault_of(exc)
        if fault is None:
            return await _internal(_request, exc)
        return JSONResponse({"detail": f"The server cannot answer this now: {fault}. It "
                                       "carries on by itself once the store is back.",
                             "code": "busy"}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("a request failed")
        return JSONResponse({"detail": "The server failed on this request (its log says "
                                       "why).", "code": "internal"}, status_code=500)

    _document(app, [route for router in routers for route in router.routes])

    return app


class Who:
    """Who is asking, before any route runs (a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware would wrap every streamed log and push stream in one more copy).

    Over the Unix socket (no client address), the account the kernel names (the
    server's own, or a person's: backend/peer.py), unless a token comes with the request:
    then, as over TCP, whoever the token names, or a refusal (401; 429 after too many
    failures). A token names no more over the socket than over TCP; `workdeck web` runs a
    browser's console as the person who signed in with it."""

    def __init__(self, app: Any, access: Any) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        state = scope.setdefault("state", {})
        try:
            authorization = next((value.decode("latin-1") for name, value
                                  in scope["headers"] if name == b"authorization"), "")
            if client is None and authorization:
                principal = await self.access.authenticate(authorization, "socket")
            elif client is None:
                principal = await self.access.local(state.get("peer_uid"))
            else:
                if not authorization and scope.get("path") == metrics.PATH \
                        and _loopback(client[0]):
                    # A scraper on this machine reads the figures without a token.
                    principal = Principal("metrics", "loopback", (("viewer", ""),),
                                          address=client[0])
                else:
                    principal = await self.access.authenticate(authorization, client[0])
        except WorkdeckError as exc:
            refusal = JSONResponse({"detail": str(exc), "code": exc.code},
                                   status_code=exc.status_code)
            await refusal(scope, receive, send)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _document(app: FastAPI, routes: list[Any]) -> None:
    """The OpenAPI document tells the truth about refusals: every route may answer with
    the one error shape (not FastAPI's validation list), under the statuses it uses; and
    about the events of the streams."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        streams.document(schema, routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorBody"] = ErrorBody.model_json_schema()
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"description": "Refused: a sentence and a code",
                 "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                # 401, 403, 429: who is asking, and whether they may (every route);
                # 503: the store cannot be reached now (a database restarting).
                for status in ("400", "401", "403", "404", "409", "413", "422", "429",
                               "500", "503"):
                    responses[status] = error
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _settle_garbage_collector() -> None:
    # A full collection walks every object alive: the libraries, the fleet, the caches.
    # With ten thousand workers that took 0.15 s, stalling the event loop (and everyone it
    # serves) several times a minute during a sweep. What start-up made lives as long as
    # the server: collected once, then kept out of later passes. Full passes come after
    # a hundred middle ones rather than ten (Python's default): cyclic garbage is young
    # (a refused connection's exception), the old generation is the fleet's state.
    gc.collect()
    gc.freeze()
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
