"""Routes for runs: launch, plan, list, show, cancel, decide, and the log stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from backend.api.deps import (
    LARGEST,
    ActorDep,
    BackendDep,
    Count,
    LineNumber,
    RunId,
    Watch,
    WhoDep,
    need,
)
from backend.api.streams import ANSWER, sends
from backend.errors import InvalidInput
from backend.nodes import refuse_if_draining
from backend.runs import launch, logsearch, logstore
from backend.runs.rerun import prepare_rerun
from backend.store.models import FINISHED
from wire import jsontext
from wire.events import LogChunk, LogEnd, Skipped, WaitingNow
from wire.logcodec import Clock, as_text
from wire.runs import (
    DecisionRequest,
    FoundLine,
    LaunchRequest,
    Plan,
    RerunRequest,
    Run,
    RunSummary,
)

router = APIRouter(prefix="/api/runs", tags=["runs"])

HEARTBEAT_S = 15.0
LOG_CLOSING_WAIT_S = 10.0  # a reader of a finished run waits this long for its last lines
PAGE = 50_000  # lines per read from the store, so a long log streams in bounded pieces


@router.post("", dependencies=[need("launch")], status_code=201, response_model=Run)
async def launch_run(body: LaunchRequest, backend: BackendDep, who: WhoDep,
                     actor: ActorDep) -> dict[str, Any]:
    who.require("launch", body.environment)
    refuse_if_draining(backend.nodes)
    return await backend.runs.launch(body, actor, who.name)


@router.post("/{run_id}/rerun", dependencies=[need("launch")], status_code=201,
             response_model=Run)
async def rerun(run_id: RunId, body: RerunRequest, backend: BackendDep, who: WhoDep,
                actor: ActorDep) -> dict[str, Any]:
    """Run a finished run again: the runbook as it had it, its environment and values
    (sensitive ones given again), from a step or its first failed step on. The new run
    names it (`rerun_of`), and it the new run (`reruns`)."""
    request, again, cause = await asyncio.to_thread(
        prepare_rerun, backend.store, run_id, from_step=body.from_step,
        from_failed=body.from_failed, sensitive=body.variables)
    who.require("launch", request.environment)
    refuse_if_draining(backend.nodes)
    return await backend.runs.launch(request, actor, who.name, cause=cause, rerun=again)


@router.post("/plan", dependencies=[need("view")], response_model=Plan)
async def plan(body: LaunchRequest, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(launch.plan, backend.store, backend.leases, body)


@router.get("", dependencies=[need("view")], response_model=list[RunSummary])
async def list_runs(backend: BackendDep, limit: Count = 200,
                    status: str | None = None) -> list[dict[str, Any]]:
    return await asyncio.to_thread(backend.runs.list, min(max(limit, 1), 5000), status)


@router.get("/{run_id}", dependencies=[need("view")], response_model=Run)
async def show(run_id: RunId, backend: BackendDep) -> dict[str, Any]:
    return await asyncio.to_thread(backend.runs.get, run_id)


@router.post("/{run_id}/cancel", dependencies=[need("cancel")], response_model=Run)
async def cancel(run_id: RunId, backend: BackendDep, who: WhoDep,
                 actor: ActorDep) -> dict[str, Any]:
    run = await asyncio.to_thread(backend.runs.get, run_id)
    who.require("cancel", run["environment"])
    return await backend.runs.cancel(run_id, actor)


@router.post("/{run_id}/decide", dependencies=[need(None)], response_model=Run)
async def decide(run_id: RunId, body: DecisionRequest, backend: BackendDep, who: WhoDep,
                 actor: ActorDep) -> dict[str, Any]:
    """Answer what the run waits for: a manual step or a start under four eyes (approve,
    abort: approvers; not the person who launched it, where another person must), a
    guided failure or step-through (retry, skip, abort, run: operators)."""
    run = await asyncio.to_thread(backend.runs.get, run_id)
    waiting = run["waiting"] or {}
    who.require("approve" if "approve" in waiting.get("actions", ()) else "decide",
                run["environment"])
    return await backend.runs.decide(run_id, body, actor, who.name)


@router.get("/{run_id}/log/find", dependencies=[need("view")], response_model=FoundLine)
async def find_in_log(run_id: RunId, backend: BackendDep, text: str = "", errors: bool = False,
                      after: LineNumber = 0, before: LineNumber | None = None,
                      position: Count | None = None,
                      step: Annotated[int | None, Query(ge=0, le=LARGEST, deprecated=True,
                                                        description="Renamed `position`.")
                                      ] = None) -> dict[str, Any]:
    """The first line after `after` (or the last before `before`) holding `text` (any
    case), or reading as an error with `errors=true`; of the step at `position` only
    when given. `{"line": {seq, at, position, worker, stream, text}}`, or
    `{"line": null}`."""
    await asyncio.to_thread(backend.runs.get, run_id)  # 404 for an unknown run
    if not errors and not text:
        raise InvalidInput("Say what to find: text=... or errors=true.")
    line = await asyncio.to_thread(logsearch.find_line, backend.store, run_id, text=text,
                                   errors=errors, after=max(after, 0), before=before,
                                   position=position if position is not None else step)
    if line is not None:
        line["step"] = line["position"]  # its name of one release ago (README, "Changed")
    return {"line": line}


@router.get("/{run_id}/log", dependencies=[need("view")],
            response_class=StreamingResponse, responses=ANSWER)
@sends(chunks=list[LogChunk], skipped=Skipped, waiting=WaitingNow | None, end=LogEnd)
async def run_log(run_id: RunId, request: Request, backend: BackendDep,
                  after: LineNumber = 0, follow: bool = False, tail: Count | None = None,
                  page: Count = PAGE, keep: Count | None = None,
                  limit: Count | None = None) -> StreamingResponse:
    """Server-Sent Events: `chunks` (see logstore.read), oldest first, then `end`.

    While following, `waiting` says when the run starts waiting for a decision
    ({run_id, position, actions, prompt}) and `null` when it no longer does.

    `page` bounds the lines per event: a console asks for small ones, so that no single
    event keeps it from answering keys.

    `keep`: the reader shows only that many last lines, so when it falls further behind
    a running run than that, it is moved on to the live tail with a `skipped` event
    ({after, to}: the lines numbered after `after` up to `to` were left out) instead of
    being sent lines it would drop unseen.

    `after` resumes after a line number; `tail` starts that many lines before the end;
    `limit` ends the stream after that many lines (a reader paging through a window).
    """
    await asyncio.to_thread(backend.runs.get, run_id)  # 404 for an unknown run
    page = min(max(page, 1), PAGE)
    if tail is not None:
        after = max(after, await asyncio.to_thread(logstore.last_seq, backend.store, run_id)
                    - max(tail, 0))

    async def stream() -> AsyncIterator[bytes]:
        async for event, data in _log_events(backend, request, run_id, after=after,
                                             follow=follow, page=page, keep=keep,
                                             limit=limit):
            # Encoding megabytes of log is done off the loop, which serves everyone.
            yield await asyncio.to_thread(_sse, event, data) if event == "chunks" \
                else _sse(event, data)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


@router.get("/{run_id}/log.txt", dependencies=[need("view")])
async def run_log_text(run_id: RunId, request: Request, backend: BackendDep,
                       after: LineNumber = 0, follow: bool = False) -> StreamingResponse:
    """The log as plain text, as `workdeck runs log` prints it (`HH:MM:SS [step:worker]
    text`, stderr marked `! `, Workdeck's own lines `** `), for curl and less;
    `follow=1` keeps streaming until the run ends."""
    await asyncio.to_thread(backend.runs.get, run_id)  # 404 for an unknown run
    clock = Clock()

    def text(chunks: list[dict[str, Any]]) -> bytes:
        return "".join(as_text(chunk, clock) for chunk in chunks).encode("utf-8", "replace")

    async def stream() -> AsyncIterator[bytes]:
        async for event, data in _log_events(backend, request, run_id, after=after,
                                             follow=follow, page=PAGE):
            if event == "chunks":
                yield await asyncio.to_thread(text, data)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": "no-store"})


async def _log_events(backend: Any, request: Request, run_id: int, *, after: int,
                      follow: bool, page: int, keep: int | None = None,
                      limit: int | None = None) -> AsyncIterator[tuple[str, Any]]:
    """A run's log as events (chunks, skipped, waiting, end), for every way of reading it."""
    seen = after
    left = limit  # lines still wanted, when limited
    told: dict[str, Any] | None = None  # the wait last said to this follower
    closing_until: float | None = None  # how long a reader waits for a finished run's log
    watch = Watch(backend.access, request.state.principal, "view")
    while True:
        if not await watch.allowed():
            # Their token was revoked, or their grants changed: said, so that a follower
            # does not take the stream's end for a node gone away.
            yield "refused", {"message": f"You may no longer see run {run_id}: your token "
                              "was revoked or your grants changed."}
            return
        newest = backend.hub.newest(run_id)
        if keep is not None and newest - seen > keep:
            yield "skipped", {"after": seen, "to": newest - keep}
            seen = newest - keep
        if left is not None and left <= 0:
            run = await asyncio.to_thread(backend.runs.get, run_id)
            yield "end", {"status": run["status"], "reason": run["reason"], "following": False}
            return
        want = page if left is None else min(page, left)
        chunks = backend.hub.latest_after(run_id, seen, want)
        if chunks is None:
            chunks = await asyncio.to_thread(logstore.read, backend.store, run_id, seen, want)
        if chunks and left is not None:
            chunks = _at_most(chunks, left)
            left -= chunks[-1]["last_seq"] - seen
        if chunks:
            seen = chunks[-1]["last_seq"]
            yield "chunks", chunks
            continue
        run = await asyncio.to_thread(backend.runs.get, run_id)
        if run["status"] in FINISHED and not backend.hub.writing(run_id) and (
                run["node"] in ("", backend.nodes.name)
                or await asyncio.to_thread(logstore.closed, backend.store, run_id)):
            # Its last lines are stored (its outcome may be known before them, on a full
            # disk; on another node, its log says when it is closed): nothing more can
            # come, so check once more and end.
            chunks = await asyncio.to_thread(logstore.read, backend.store, run_id, seen, page)
            if chunks:
                seen = chunks[-1]["last_seq"]
                yield "chunks", chunks
                continue
            yield "end", {"status": run["status"], "reason": run["reason"]}
            return
        if not follow and run["status"] in FINISHED:
            # Its outcome is stored before its last lines (so that a full disk never hides
            # it): a reader right after the end waits the moment they take, or it would get
            # the log without its tail (a full disk may make it longer: then it ends).
            closing_until = closing_until or time.monotonic() + LOG_CLOSING_WAIT_S
            if time.monotonic() > closing_until:
                yield "end", {"status": run["status"], "reason": run["reason"],
                              "following": False}
                return
        elif not follow:
            yield "end", {"status": run["status"], "reason": run["reason"], "following": False}
            return
        if run["waiting"] != told:
            # A follower would otherwise see nothing while the run waits for someone.
            told = run["waiting"]
            yield "waiting", {"run_id": run_id, **(told or {})} if told else None
        if await request.is_disconnected():
            return
        # A finished run's log closes in a moment, and its close wakes no one: looked at
        # again soon.
        await backend.hub.wait(run_id, 0.05 if closing_until else watch.wait(HEARTBEAT_S))


def _at_most(chunks: list[dict[str, Any]], lines: int) -> list[dict[str, Any]]:
    """The first `lines` lines of these chunks (memory's batches come whole)."""
    taken: list[dict[str, Any]] = []
    for chunk in chunks:
        count = chunk["last_seq"] - chunk["first_seq"] + 1
        if count > lines:
            chunk = {**chunk, "last_seq": chunk["first_seq"] + lines - 1,
                     "lines": "\n".join(chunk["lines"].split("\n", lines)[:lines])}
            count = lines
        taken.append(chunk)
        lines -= count
        if lines <= 0:
            break
    return taken


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + jsontext.dumps(data) + b"\n\n"
