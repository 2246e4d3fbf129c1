"""Errors the backend reports to a user: each carries one clear sentence. They are part
of the wire contract (wire.errors), where they are defined."""

from __future__ import annotations

from wire.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
    WorkdeckError,
)

__all__ = ["Conflict", "Forbidden", "InvalidInput", "NotFound", "Unauthorized",
           "Unavailable", "WorkdeckError"]
