"""Errors the backend reports to a user: each carries one clear sentence."""

from __future__ import annotations


class WorkdeckError(Exception):
    """A refused request; `str(exc)` is the sentence shown to the user."""

    status_code = 400


class InvalidInput(WorkdeckError):
    status_code = 422


class NotFound(WorkdeckError):
    status_code = 404


class Conflict(WorkdeckError):
    status_code = 409
