"""The one shape of every refusal the API gives: a sentence for people, a code for programs.

Shared by the server (which answers with it) and the clients (which read it); imports
neither the store nor FastAPI.
"""

from __future__ import annotations

from pydantic import BaseModel

# The codes a refusal can carry, by the HTTP status that usually goes with them.
CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
         429: "busy", 500: "internal", 503: "busy"}


class ErrorBody(BaseModel):
    """Why a request was refused."""

    detail: str  # one sentence, for a person
    code: str  # for a program: not_found, conflict, invalid, forbidden, busy, ...


class WorkdeckError(Exception):
    """A refused request; `str(exc)` is the sentence shown to the user, `code` the name a
    program goes by."""

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


class Unauthorized(WorkdeckError):
    """No one known is asking (no token, or one that is wrong, expired or revoked)."""

    status_code = 401
    code = "unauthorized"


class Forbidden(WorkdeckError):
    """Someone known is asking for what their roles do not allow."""

    status_code = 403
    code = "forbidden"


class Unavailable(WorkdeckError):
    """The server cannot do it now, but will, or another can (try again, or elsewhere)."""

    status_code = 503
    code = "busy"


def code_for(status: int) -> str:
    return CODES.get(status, "invalid" if 400 <= status < 500 else "internal")
