"""Routes for runs: launch, plan, list, show, cancel, decide, and the log stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from backend import launch, logstore, runs
from backend.api.deps import ActorDep, BackendDep
from backend.models import FINISHED

router = APIRouter(prefix="/api/runs", tags=["runs"])

HEARTBEAT_S = 15.0
PAGE = 50_000  # lines per read from the store, so a long log streams in bounded pieces


@router.post("", status_code=201)
async def launch_run(body: launch.LaunchRequest, backend: BackendDep,
                     actor: ActorDep) -> dict[str, Any]:
    return await backend.runs.launch(body, actor)


@router.post("/plan")
async def plan(body: launch.LaunchRequest, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(launch.plan, backend.store, backend.runs.leases, body)


@router.get("")
async def list_runs(backend: BackendDep, limit: int = 200,
                    status: str | None = None) -> list[dict[str, Any]]:
    return await asyncio.to_thread(backend.runs.list, min(max(limit, 1), 5000), status)


@router.get("/{run_id}")
async def show(run_id: int, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(backend.runs.get, run_id)


@router.post("/{run_id}/cancel")
async def cancel(run_id: int, backend: BackendDep, actor: ActorDep) -> dict[str, Any]:
    return await backend.runs.cancel(run_id, actor)


@router.post("/{run_id}/decide")
async def decide(run_id: int, body: runs.DecisionRequest, backend: BackendDep,
                 actor: ActorDep) -> dict[str, Any]:
    return await backend.runs.decide(run_id, body, actor)


@router.get("/{run_id}/log")
async def run_log(run_id: int, request: Request, backend: BackendDep, after: int = 0,
                  follow: bool = False, tail: int | None = None,
                  page: int = PAGE, keep: int | None = None) -> StreamingResponse:
    """Server-Sent Events: `chunks` (see logstore.read), oldest first, then `end`.

    While following, `waiting` says when the run starts waiting for a decision
    ({run_id, position, actions, prompt}) and `null` when it no longer does.

    `page` bounds the lines per event: a console asks for small ones, so that no single
    event keeps it from answering keys.

    `keep`: the reader shows only that many last lines, so when it falls further behind
    a running run than that, it is moved on to the live tail with a `skipped` event
    ({after, to}: the lines numbered after `after` up to `to` were left out) instead of
    being sent lines it would drop unseen.

    `after` resumes after a line number; `tail` starts that many lines before the end.
    """
    await asyncio.to_thread(backend.runs.get, run_id)  # 404 for an unknown run
    page = min(max(page, 1), PAGE)
    if tail is not None:
        after = max(after, await asyncio.to_thread(logstore.last_seq, backend.store, run_id)
                    - max(tail, 0))

    async def stream() -> AsyncIterator[bytes]:
        seen = after
        told: dict[str, Any] | None = None  # the wait last said to this follower
        while True:
            newest = backend.hub.newest(run_id)
            if keep is not None and newest - seen > keep:
                yield _sse("skipped", {"after": seen, "to": newest - keep})
                seen = newest - keep
            chunks = backend.hub.latest_after(run_id, seen, page)
            if chunks is None:
                chunks = await asyncio.to_thread(logstore.read, backend.store, run_id, seen,
                                                 page)
            if chunks:
                seen = chunks[-1]["last_seq"]
                # Encoding megabytes of log is done off the loop, which serves everyone.
                yield await asyncio.to_thread(_sse, "chunks", chunks)
                continue
            run = await asyncio.to_thread(backend.runs.get, run_id)
            if run["status"] in FINISHED:
                # The run's last lines were stored before its status changed: nothing
                # more can come, so check once more and end.
                chunks = await asyncio.to_thread(logstore.read, backend.store, run_id, seen,
                                                 page)
                if chunks:
                    seen = chunks[-1]["last_seq"]
                    yield _sse("chunks", chunks)
                    continue
                yield _sse("end", {"status": run["status"], "reason": run["reason"]})
                return
            if not follow:
                yield _sse("end", {"status": run["status"], "reason": run["reason"],
                                   "following": False})
                return
            if run["waiting"] != told:
                # A follower would otherwise see nothing while the run waits for someone.
                told = run["waiting"]
                yield _sse("waiting", {"run_id": run_id, **(told or {})} if told else None)
            if await request.is_disconnected():
                return
            await backend.hub.wait(run_id, HEARTBEAT_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
