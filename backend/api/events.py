"""The push stream: a snapshot of the fleet, then every change, as Server-Sent Events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from backend.api.deps import BackendDep, Watch, need
from backend.api.streams import ANSWER, sends
from backend.fleet import usage
from backend.runs import launch, runbooks
from backend.store.db import for_client
from wire import jsontext
from wire.events import Change, Snapshot

router = APIRouter(prefix="/api", tags=["events"])

HEARTBEAT_S = 15.0
BIG_BATCH = 200  # changes in one event past which it is encoded in a thread


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + jsontext.dumps(data) + b"\n\n"


class _Encoded:
    """Each worker's JSON, made once per version of it: a snapshot of ten thousand workers
    is then a join of bytes, not megabytes encoded again for every console.

    Workers go as rows under one list of column names (`worker_columns`): their keys
    repeated ten thousand times were half of the snapshot, and of the time a console
    takes to decode it.
    """

    def __init__(self) -> None:
        self._made: dict[str, tuple[Any, bytes]] = {}
        self._columns: list[str] = []
        self._lock = threading.Lock()  # two consoles may connect at once

    def workers(self, latest: dict[str, dict[str, Any]]) -> tuple[list[str], bytes]:
        """(columns, the JSON list of rows) of every worker, sorted by name."""
        with self._lock:
            return self._workers(latest)

    def _workers(self, latest: dict[str, dict[str, Any]]) -> tuple[list[str], bytes]:
        columns = list(next(iter(latest.values()))) if latest else []
        if columns != self._columns:
            self._made.clear()  # the shape changed (a new version): encode everything
            self._columns = columns
        parts = []
        made = self._made
        for name in sorted(latest):
            worker = latest[name]
            known = made.get(name)
            if known is None or known[0] is not worker:
                row = [worker.get(column) for column in columns]
                known = made[name] = (worker, jsontext.dumps(row))
            parts.append(known[1])
        if len(made) > len(latest):
            for gone in set(made) - set(latest):
                del made[gone]
        return columns, b"[" + b",".join(parts) + b"]"


_ENCODED = _Encoded()


def _snapshot(workers: tuple[list[str], bytes], rest: dict[str, Any]) -> bytes:
    columns, rows = workers
    body = jsontext.dumps({"worker_columns": columns, **rest})
    return b'event: snapshot\ndata: {"worker_rows":' + rows + b"," + body[1:] + b"\n\n"


@router.get("/events", dependencies=[need("view")],
            response_class=StreamingResponse, responses=ANSWER)
@sends(snapshot=Snapshot, changes=list[Change])
async def events(request: Request, backend: BackendDep) -> StreamingResponse:
    # Subscribe before reading the snapshot, so no change falls between the two; a
    # change seen twice is harmless because every event carries the whole object.
    subscription = backend.bus.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        with subscription:
            pools, history, recent, books, envs = await asyncio.gather(
                backend.usage.pools(),
                for_client(usage.history, backend.store),
                backend.runs.recent(),
                for_client(runbooks.list_all, backend.store),
                for_client(launch.environment_rows, backend.store),
            )
            # Workers from memory: every change to one goes through the bus. A copy of the
            # mapping, taken on the loop, so the thread never sees it change.
            latest = dict(backend.bus.latest["worker"])
            rest = {"pools": pools, "usage_history": history, "runs": recent,
                    "advice": backend.advice_counts, "runbooks": books,
                    "environments": [env["name"] for env in envs],
                    "four_eyes": [env["name"] for env in envs if env["four_eyes"]],
                    "server": backend.status(), "you": request.state.principal.public()}
            # Megabytes for a big fleet: made off the loop, which serves everyone.
            yield await for_client(lambda: _snapshot(_ENCODED.workers(latest), rest))
            watch = Watch(backend.access, request.state.principal, "view")
            while not await request.is_disconnected():
                batch = await subscription.next_batch(timeout=watch.wait(HEARTBEAT_S))
                if not await watch.allowed():
                    return  # their token was revoked, or their grants changed
                if not batch:
                    if watch.heartbeat_due(HEARTBEAT_S):
                        yield b": heartbeat\n\n"
                    continue
                # A sweep's thousands of changes are encoded off the loop.
                yield (_sse("changes", batch) if len(batch) < BIG_BATCH
                       else await for_client(_sse, "changes", batch))

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})
