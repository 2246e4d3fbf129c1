"""Names in URL paths. A worker, pool or runbook name may hold "/": it travels as %2F
inside one path segment, so `/api/workers/x%2Fhistory` is the worker "x/history" and
`/api/workers/x/history` the history of the worker "x" (see backend/api/names.py)."""

from __future__ import annotations

from urllib.parse import quote


def segment(name: str) -> str:
    """A name as one URL path segment."""
    return quote(name, safe="")
