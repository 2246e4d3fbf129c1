"""What the HTTP API accepts and returns, shared by the routes and the clients' expectations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckRequest(BaseModel):
    workers: list[str] = Field(default_factory=list)
    pools: list[str] = Field(default_factory=list)


class Policy(BaseModel):
    """The machine policy: how often and how strictly workers are checked."""

    interval_s: float = Field(60.0, ge=1, le=86_400)
    timeout_s: float = Field(10.0, ge=1, le=600)
    disk_free_warning_mb: float = Field(1024.0, ge=0)
    load_warning_factor: float = Field(2.0, gt=0)
    history_size: int = Field(120, ge=1, le=10_000)
    custom_script: str = ""


class SettingsUpdate(BaseModel):
    builtin_worker: bool | None = None
    worker_name_pattern: str | None = None  # the advisor's naming conventions (regexes)
    pool_name_pattern: str | None = None
    # Retention (backend.retention): finished runs by age and total size, the audit log.
    keep_runs_days: float | None = Field(None, gt=0, le=36_500)
    keep_runs_gb: float | None = Field(None, gt=0, le=100_000)
    keep_audit_days: float | None = Field(None, gt=0, le=36_500)


Json = dict[str, Any]
