"""What a client reports when the server refuses or cannot be reached (no httpx here:
a command that fails before any request should not wait for it to import)."""

from __future__ import annotations


class ApiError(Exception):
    """The server refused a request; `str()` is its one-sentence reason, `code` its
    machine-readable name (empty when the server gave none)."""

    def __init__(self, message: str, status_code: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class ServerUnavailable(ApiError):
    """No server answers at the configured address."""
