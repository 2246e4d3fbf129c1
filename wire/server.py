"""The server itself on the wire: its status, its settings, the audit log, the advisor's
findings, and the machine policy that schedules health checks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wire.base import Answer


class StoreInUse(Answer):
    kind: Literal["sqlite", "postgresql"]
    where: str = Field(description="The SQLite file, or the PostgreSQL URL (its password "
                                    "masked).")


class ServerStatus(Answer):
    version: str
    pid: int
    data_dir: str
    listen: str = Field(description="Where it listens: its socket, and an address if any.")
    started_at: float = Field(description="Unix time.")
    uptime_s: float
    connections: int = Field(description="Open SSH connections.")
    subscribers: int = Field(description="Consoles following the push stream.")
    store_fault: str | None = Field(description="Why the store refuses writes now (a full "
                                                "disk, say); null while it works.")
    store: StoreInUse = Field(description="Where the server keeps its data.")
    node: str = Field("", description="This server's name among those using the store.")
    data_dir_bytes: int
    disk_free_bytes: int | None
    tls_fingerprint: str | None = Field(None, description=(
        "The SHA-256 fingerprint of the TLS certificate served over TCP (null: no TCP, or "
        "plain HTTP on loopback)."))
    host: str = Field("", description="The server's host name.")
    socket_group: str | None = Field(None, description=(
        "The OS group whose members may use the Unix socket too (null: the server's "
        "account only)."))


class Stopping(Answer):
    stopping: bool


class Settings(Answer):
    builtin_worker: bool = Field(description="The built-in worker runs commands on the "
                                             "server's own machine.")
    worker_name_pattern: str = Field(description="The advisor's naming convention (a regex).")
    pool_name_pattern: str
    keep_runs_days: float = Field(description="Finished runs older than this are pruned.")
    keep_runs_gb: float = Field(description="And the oldest beyond this total size.")
    keep_audit_days: float
    node_heartbeat_s: float = Field(5.0, description="How often each server node says it "
                                                     "is alive.")
    node_lease_s: float = Field(15.0, description="A node silent this long is lost: the "
                                                  "others take over its work.")


class SettingsUpdate(BaseModel):
    """Only what is given changes."""

    builtin_worker: bool | None = None
    worker_name_pattern: str | None = None  # the advisor's naming conventions (regexes)
    pool_name_pattern: str | None = None
    # Retention: finished runs by age and total size, the audit log.
    keep_runs_days: float | None = Field(None, gt=0, le=36_500)
    keep_runs_gb: float | None = Field(None, gt=0, le=100_000)
    keep_audit_days: float | None = Field(None, gt=0, le=36_500)
    # Server nodes sharing a database (the lease at least twice the heartbeat).
    node_heartbeat_s: float | None = Field(None, ge=0.5, le=60)
    node_lease_s: float | None = Field(None, ge=2, le=600)


class AuditEvent(Answer):
    at: str | None
    actor: str
    action: str = Field(description="What was done, e.g. worker.add, run.approve.")
    target: str
    detail: str


class Finding(Answer):
    """Something in the fleet that goes against the worker recommendations."""

    check: str = Field(description="Which recommendation, e.g. pool-redundancy, "
                                   "pool-name, builtin-worker, worker-account, "
                                   "container-engine, container-suggested.")
    severity: Literal["critical", "warning"]
    subject: Literal["worker", "pool", "fleet"]
    name: str = Field(description="The worker or pool concerned.")
    finding: str
    advice: str = Field(description="What to do about it.")


class Policy(BaseModel):
    """The machine policy: how often and how strictly workers are checked."""

    interval_s: float = Field(60.0, ge=1, le=86_400, description="Seconds between checks.")
    timeout_s: float = Field(10.0, ge=1, le=600, description="A check that takes longer "
                                                             "fails.")
    disk_free_warning_mb: float = Field(1024.0, ge=0, description="Less free space than "
                                        "this on `/` or the work folder is a warning.")
    load_warning_factor: float = Field(2.0, gt=0, description="A 5-minute load above this "
                                       "many times the CPU count is a warning.")
    history_size: int = Field(120, ge=1, le=10_000, description="Checks kept per worker.")
    custom_script: str = Field("", description="A bash script run on every worker: exit 0 "
                                               "healthy, 1 warning, else unhealthy.")


class CheckRequest(BaseModel):
    """Which workers to check now: these, and every member of these pools (none: all)."""

    workers: list[str] = Field(default_factory=list)
    pools: list[str] = Field(default_factory=list)
