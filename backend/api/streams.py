"""Routes that answer with Server-Sent Events declare what each event carries, and the
OpenAPI document lists it under their `text/event-stream` answer (`x-events`: event name
to JSON schema), so an integration can read the push stream and the log stream from
/docs as it reads every other answer; the contract tests hold each event sent to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import TypeAdapter

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

ANSWER = {200: {"description": "Server-Sent Events: `event: NAME` and `data: JSON` (see "
                               "x-events), and `: heartbeat` comments while nothing is sent.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def sends(**events: Any) -> Callable[[Endpoint], Endpoint]:
    """Declare an SSE route's events: `@sends(snapshot=Snapshot, changes=list[Change])`."""

    def declare(endpoint: Endpoint) -> Endpoint:
        endpoint.__events__ = events  # type: ignore[attr-defined]
        return endpoint

    return declare


def document(schema: dict[str, Any], routes: list[Any]) -> None:
    """Put each declared route's events, and the models they use, into `schema`."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    ref = "#/components/schemas/{model}"
    for route in routes:
        events = getattr(getattr(route, "endpoint", None), "__events__", None)
        if not events:
            continue
        declared: dict[str, Any] = {}
        for name, shape in events.items():
            made = TypeAdapter(shape).json_schema(ref_template=ref, mode="serialization")
            for model, definition in made.pop("$defs", {}).items():
                # A model the routes use already is the same model: one entry for both.
                components.setdefault(model, definition)
            declared[name] = made
        for method in route.methods:
            operation = schema["paths"][route.path_format][method.lower()]
            answer = operation["responses"]["200"]["content"]["text/event-stream"]
            answer["x-events"] = declared
