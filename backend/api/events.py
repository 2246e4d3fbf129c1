"""The push stream: a snapshot of the fleet, then every change, as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from backend import fleet, launch, runbooks, usage
from backend.api.deps import BackendDep

router = APIRouter(prefix="/api", tags=["events"])

HEARTBEAT_S = 15.0
RECENT_RUNS = 200  # runs in the snapshot; older ones are a `GET /api/runs` away


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/events")
async def events(request: Request, backend: BackendDep) -> StreamingResponse:
    # Subscribe before reading the snapshot, so no change falls between the two; a
    # change seen twice is harmless because every event carries the whole object.
    subscription = backend.bus.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        with subscription:
            pools, history, recent, books, envs = await asyncio.gather(
                asyncio.to_thread(fleet.list_pools, backend.store,
                                  backend.leases.queued_by_pool()),
                asyncio.to_thread(usage.history, backend.store),
                asyncio.to_thread(backend.runs.list, RECENT_RUNS),
                asyncio.to_thread(runbooks.list_all, backend.store),
                asyncio.to_thread(launch.environments, backend.store),
            )
            # Workers from memory: every change to one goes through the bus.
            workers = sorted(backend.bus.latest["worker"].values(), key=lambda w: w["name"])
            snapshot = {"workers": workers, "pools": pools, "usage_history": history,
                        "runs": recent, "advice": backend.advice_counts, "runbooks": books,
                        "environments": envs, "server": backend.status()}
            # Megabytes for a big fleet: encoded off the loop, which serves everyone.
            yield await asyncio.to_thread(_sse, "snapshot", snapshot)
            while not await request.is_disconnected():
                batch = await subscription.next_batch(timeout=HEARTBEAT_S)
                if not batch:
                    yield b": heartbeat\n\n"
                    continue
                yield _sse("changes", batch)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})
