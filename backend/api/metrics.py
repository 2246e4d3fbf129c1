"""`GET /metrics`: the server's figures in Prometheus' text format (backend/metrics.py).

Readable by anyone with the viewer role, and without a token from this machine itself
(a Prometheus or node exporter beside the server, over loopback): the figures name
runbooks, environments and pools, never a run's values or output."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.api.deps import BackendDep, need

router = APIRouter(tags=["metrics"])
PATH = "/metrics"


@router.get(PATH, dependencies=[need("view")], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus' text format."}})
async def metrics(backend: BackendDep) -> Response:
    body = await asyncio.to_thread(backend.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
