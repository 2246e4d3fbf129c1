"""Names that hold "/" stay one path segment on their way to a route.

ASGI servers decode %2F before routing, so a worker named "x/history" and the history of
the worker "x" would be the same path. `KeepSlashes` routes on a path where each %2F
became a stand-in character that no name may hold (names refuse control characters);
the `{name:name}` convertor matches one segment and turns the stand-in back into "/".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor

from wire.paths import segment

STAND_IN = "\x1f"  # ASCII unit separator: a control character, refused in every name


class NameConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value.replace(STAND_IN, "/")

    def to_string(self, value: str) -> str:
        return segment(value)


register_url_convertor("name", NameConvertor())


class KeepSlashes:
    """Pure ASGI middleware: the path routed on keeps quoted slashes apart."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2f" in raw.lower():
            text = raw.decode("latin-1").replace("%2F", STAND_IN).replace("%2f", STAND_IN)
            scope = {**scope, "path": unquote(text)}
        await self.app(scope, receive, send)
