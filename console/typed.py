"""The API's answers as the wire models say they are (wire/), for both clients.

An answer that does not fit its model is refused with a sentence rather than read half
right: it means the client and the server are of different versions."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from console.errors import ApiError

T = TypeVar("T")


@cache
def _adapter(shape: Any) -> Any:
    # pydantic is imported on first use: commands that read no answer never pay for it.
    from pydantic import TypeAdapter

    return TypeAdapter(shape)


def as_model(shape: type[T], data: Any, what: str) -> T:
    from pydantic import ValidationError

    try:
        return _adapter(shape).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        raise ApiError(f"The server's answer to {what} is not what this client expects "
                       f"(at {where}: {first['msg']}); are the client and the server the "
                       "same version?") from None


def jsonable(value: Any) -> Any:
    """Models back into JSON data, for --json (the same keys the server sent)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
