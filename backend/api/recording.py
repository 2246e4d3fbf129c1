"""Every JSON answer written to a file, for the contract tests: they check each answer the
whole suite provoked against the model its route declares (WORKDECK_RECORD_ANSWERS names
the file; without it this middleware is not installed). Each event of the push stream is
recorded too, as its event name and its data."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

ENV = "WORKDECK_RECORD_ANSWERS"
MAX_BODY = 8 * 1024 * 1024  # larger answers are left out rather than held in memory
# Of each kind of event, a stream records this many: a million-line log streamed to a
# test is then a sample, not a gigabyte of records to check.
EVENTS_OF_A_KIND = 50


def wanted() -> str | None:
    return os.environ.get(ENV) or None


class AnswerRecorder:
    """Pure ASGI middleware: log streams pass through unrecorded."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        json_body: bytearray | None = None
        events = False
        recorded: dict[str, int] = {}  # of this stream's events, how many of each kind

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status, json_body, events
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers") or [])
                kind = headers.get(b"content-type", b"")
                if kind.startswith(b"application/json"):
                    json_body = bytearray()
                events = kind.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and events:
                await send(message)
                # The server sends whole events, one or more per message.
                for frame in message.get("body", b"").decode("utf-8", "replace").split("\n\n"):
                    self._write_event(scope, status, frame, recorded)
                return
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

    def _write_event(self, scope: dict[str, Any], status: int, frame: str,
                     recorded: dict[str, int]) -> None:
        # Lines end at \n alone in Server-Sent Events, not at every str.splitlines break.
        fields = dict(line.split(": ", 1) for line in frame.split("\n")
                      if ": " in line and not line.startswith(":"))
        event = fields.get("event")
        if event is None or recorded.get(event, 0) >= EVENTS_OF_A_KIND:
            return
        recorded[event] = recorded.get(event, 0) + 1
        if len(fields.get("data", "")) <= MAX_BODY:
            self._write(scope, status, fields.get("data", "").encode(), event)

    def _write(self, scope: dict[str, Any], status: int, body: bytes,
               event: str | None = None) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        answer = {"method": scope["method"], "path": raw.decode("latin-1"),
                  "status": status, "body": body.decode("utf-8", "replace")}
        if event is not None:
            answer["event"] = event
        line = json.dumps(answer)
        # The answer was sent first, and a record that cannot be written (a test that
        # fills the disk) is left out: recording never changes what a client gets.
        with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as file:
            file.write(line + "\n")
