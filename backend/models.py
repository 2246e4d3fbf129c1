"""The stored domain: workers, pools, pinned host keys, health checks, audit events, settings."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

# Worker statuses, from best to worst; `disabled` and `unknown` sit outside that order.
HEALTHY = "healthy"
WARNING = "warning"
UNHEALTHY = "unhealthy"
UNAVAILABLE = "unavailable"
UNKNOWN = "unknown"
DISABLED = "disabled"
STATUSES = (HEALTHY, WARNING, UNHEALTHY, UNAVAILABLE, UNKNOWN, DISABLED)

DEFAULT_POOL = "Default Worker Pool"
BUILTIN_WORKER = "built-in-worker"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Worker(SQLModel, table=True):
    __tablename__ = "worker"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    host: str
    port: int = 22
    user: str | None = None
    key_path: str | None = None
    use_agent: bool = False
    capacity: int = 4
    enabled: bool = True
    builtin: bool = False
    work_dir: str = ".workdeck/work"
    created_at: datetime = Field(default_factory=utcnow)
    # The latest health check, kept on the row so that listing the fleet is one query.
    status: str = UNKNOWN
    reason: str = ""
    checked_at: datetime | None = None
    latency_ms: float | None = None
    connect_ms: float | None = None
    facts: str = "{}"
    # The host key the worker presented last when it was not trusted, so that an
    # operator can trust exactly what was shown to them.
    presented_key: str | None = None
    # Set by --trust-host-key: pin the key the next connection presents, once, when
    # no key is pinned yet (it never overrides a pinned key that changed).
    trust_next_key: bool = False


class Pool(SQLModel, table=True):
    __tablename__ = "pool"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    description: str = ""
    is_default: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class PoolMember(SQLModel, table=True):
    __tablename__ = "pool_member"

    pool_id: int = Field(foreign_key="pool.id", primary_key=True, ondelete="CASCADE")
    worker_id: int = Field(foreign_key="worker.id", primary_key=True, ondelete="CASCADE")


class HostKey(SQLModel, table=True):
    """The host key pinned for a worker: the only key its connections accept."""

    __tablename__ = "host_key"

    worker_id: int = Field(foreign_key="worker.id", primary_key=True, ondelete="CASCADE")
    public_key: str
    fingerprint: str
    trusted_at: datetime = Field(default_factory=utcnow)
    trusted_by: str = ""


class HealthCheck(SQLModel, table=True):
    """One health check result; the last few per worker are kept as history."""

    __tablename__ = "health_check"

    id: int | None = Field(default=None, primary_key=True)
    worker_id: int = Field(foreign_key="worker.id", index=True, ondelete="CASCADE")
    checked_at: datetime = Field(default_factory=utcnow, index=True)
    status: str
    reason: str = ""
    latency_ms: float | None = None
    connect_ms: float | None = None
    load1: float | None = None
    disk_free_mb: float | None = None


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str
    target: str
    detail: str = ""


class Setting(SQLModel, table=True):
    """Server-wide settings (the machine policy, the built-in worker switch) as JSON values."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True)
    value: str
