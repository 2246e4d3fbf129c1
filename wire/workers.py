"""Workers on the wire: how one is added, how the API shows it, its check history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wire.base import Answer, renamed
from wire.statuses import WorkerStatus

DEFAULT_CAPACITY = 4


class WorkerCreate(BaseModel):
    """A worker to register: where it is, how to log in, which pools it serves."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    key_path: str | None = Field(None, description="A private key file on the server's "
                                                   "machine.")
    use_agent: bool = False
    pools: list[str] = Field(default_factory=list)
    capacity: int = Field(DEFAULT_CAPACITY, description="Slots: steps it runs at once.")
    work_dir: str | None = None
    trust_host_key: bool = Field(False, description="Pin the host key the first connection "
                                                    "presents.")
    engine: Literal["", "podman", "docker"] = Field(
        "", description="The container engine its steps in an image must use (empty: the "
                        "first that answers there).")


class WorkerUpdate(BaseModel):
    """What may change on a worker after it was added (what is left out stays)."""

    capacity: int | None = Field(None, description="Slots: steps it runs at once.")
    engine: Literal["", "podman", "docker"] | None = Field(
        None, description="The container engine its steps in an image must use (empty: the "
                          "first that answers there).")


class WorkerImport(BaseModel):
    """Several workers at once: all of them are added, or none."""

    workers: list[WorkerCreate]
    pools: list[str] = Field(default_factory=list, description="Pools every one joins.")
    trust_host_key: bool = False


class TrustRequest(BaseModel):
    fingerprint: str | None = Field(None, description="The SHA256 fingerprint the operator "
                                                      "checked (none: the one presented).")


class Disk(Answer):
    mount: str
    size_mb: float
    free_mb: float


def _unread(value: Any) -> bool:
    return value is None


def _fact(description: str | None = None) -> Any:
    # A fact not read is left out, as the store keeps it, rather than shown as null.
    return Field(None, exclude_if=_unread, description=description)


class Facts(Answer):
    """What the last full check read on the worker; a key is absent until it was read."""

    # Facts are stored as the check read them; a later version may read more.
    model_config = ConfigDict(extra="allow")

    os: str | None = _fact()
    kernel: str | None = _fact()
    arch: str | None = _fact()
    hostname: str | None = _fact()
    cpus: int | None = _fact()
    login_shell: str | None = _fact()
    work_dir: str | None = _fact()
    uptime_s: float | None = _fact()
    load: list[float] | None = _fact("The 1, 5 and 15-minute load.")
    mem_total_mb: float | None = _fact()
    mem_available_mb: float | None = _fact()
    disks: list[Disk] | None = _fact("`/` and the work folder.")
    container_engine: str | None = _fact("The container engine that answers there, and its "
                                         "version (\"podman 4.3.1\"); empty: none does.")


class Worker(Answer):
    """A worker as the API, the JSON output and the console show it."""

    name: str
    host: str
    port: int
    user: str | None
    key_path: str | None
    use_agent: bool
    pools: list[str]
    enabled: bool
    draining: bool = Field(description="Finishes its steps, takes no new ones.")
    builtin: bool = Field(description="The built-in worker: the server's own machine.")
    capacity: int = Field(description="Slots: how many steps it may run at once.")
    leased: int = Field(description="Slots in use: leases held by steps on it.")
    orphans: int = Field(description="Of those, slots held by steps whose processes are not "
                                     "yet seen gone.")
    orphan_reason: str
    work_dir: str
    status: WorkerStatus = Field(description="`disabled` while disabled, else the last "
                                             "check's result.")
    check_status: WorkerStatus = Field(description="The last check's result, also while "
                                                   "disabled.")
    reason: str = Field(description="Why it has its status.")
    checked_at: str | None = Field(description="When it was last checked (ISO 8601, UTC).")
    latency_ms: float | None
    connect_ms: float | None
    facts: Facts
    host_key: str | None = Field(description="The pinned host key's SHA256 fingerprint.")
    presented_host_key: str | None = Field(description="The fingerprint of a key presented "
                                                       "but not trusted.")
    engine: str = Field(description="The container engine its steps in an image must use "
                                     "(empty: the first that answers; facts.container_engine "
                                     "says which does).")
    dynamic: bool = Field(False, description="Made by its pool's provisioner for the work, "
                                             "destroyed by it when idle.")
    leases: int = Field(deprecated=renamed("leased"))
    health: WorkerStatus = Field(deprecated=renamed("check_status"))


class HealthRecord(Answer):
    """One past health check of a worker."""

    checked_at: str | None
    status: WorkerStatus
    reason: str
    latency_ms: float | None
    connect_ms: float | None
    load1: float | None
    disk_free_mb: float | None
