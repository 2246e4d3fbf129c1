"""Every JSON answer written to a file, for the contract tests: they check each answer the
whole suite provoked against the model its route declares (WORKDECK_RECORD_ANSWERS names
the file; without it this middleware is not installed)."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

ENV = "WORKDECK_RECORD_ANSWERS"
MAX_BODY = 8 * 1024 * 1024  # larger answers are left out rather than held in memory


def wanted() -> str | None:
    return os.environ.get(ENV) or None


class AnswerRecorder:
    """Pure ASGI middleware: streams (the push stream, logs) pass through unrecorded."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        json_body: bytearray | None = None

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status, json_body
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"application/json"):
                    json_body = bytearray()
            elif message["type"] == "http.response.body" and json_body is not None:
                json_body += message.get("body", b"")
                if len(json_body) > MAX_BODY:
                    json_body = None
                elif not message.get("more_body"):
                    await send(message)
                    self._write(scope, status, bytes(json_body))
                    return
            await send(message)

        await self.app(scope, receive, recording_send)

    def _write(self, scope: dict[str, Any], status: int, body: bytes) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        line = json.dumps({"method": scope["method"], "path": raw.decode("latin-1"),
                           "status": status, "body": body.decode("utf-8", "replace")})
        # The answer was sent first, and a record that cannot be written (a test that
        # fills the disk) is left out: recording never changes what a client gets.
        with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as file:
            file.write(line + "\n")
