"""Errors the backend reports to a user: each carries one clear sentence."""

from __future__ import annotations


class WorkdeckError(Exception):
    """A refused request; `str(exc)` is the sentence shown to the user, `code` the name a
    program goes by (wire.errors)."""

    status_code = 400
    code = "invalid"


class InvalidInput(WorkdeckError):
    status_code = 422
    code = "invalid"


class NotFound(WorkdeckError):
    status_code = 404
    code = "not_found"


class Conflict(WorkdeckError):
    status_code = 409
    code = "conflict"
