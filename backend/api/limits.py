"""Request bodies are bounded: a route takes at most what it needs, refused with 413 and a
sentence before more is read (a 60 MB POST must not be read whole)."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_LIMIT = 64 * 1024
# Imports of a whole inventory or runbook file.
LARGE_LIMIT = 16 * 1024 * 1024
LARGE_ROUTES = {("POST", "/api/workers/import"), ("POST", "/api/runbooks"),
                ("POST", "/api/runbooks/import")}


def limit_for(method: str, path: str) -> int:
    return LARGE_LIMIT if (method, path.rstrip("/")) in LARGE_ROUTES else DEFAULT_LIMIT


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"


class BodyLimit:
    """Pure ASGI middleware, so that it counts the body as it streams in."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["method"], scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        refused = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answered here; to the route it looks as if the client went away,
                    # and whatever it would answer is dropped.
                    refused = True
                    await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    @staticmethod
    async def _refuse(send: Any, limit: int) -> None:
        body = json.dumps({"detail": f"The request body is larger than {_size(limit)}, the "
                                     "most this route takes.", "code": "too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
