"""Pools on the wire: their figures, their members, the leases on them and their queue."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wire.base import Answer, renamed
from wire.statuses import WorkerStatus


class PoolCreate(BaseModel):
    name: str
    description: str = ""
    engine: Literal["", "podman", "docker"] = Field(
        "", description="The container engine its steps in an image use where a member is "
                        "set to none (empty: the first that answers).")


class PoolUpdate(BaseModel):
    """What may change on a pool (what is left out stays)."""

    description: str | None = None
    engine: Literal["", "podman", "docker"] | None = Field(
        None, description="The container engine its steps in an image use where a member is "
                          "set to none (empty: the first that answers).")


class ProvisionerSet(BaseModel):
    """How a pool makes workers on demand and gives them back (dynamic workers)."""

    create: str = Field(min_length=1, max_length=2000, description=(
        "A command run on the server's host, with the new worker's name as its last "
        "argument; it prints one JSON object: host, port, user, key (a private key file on "
        "the server's host) and host_key (the worker's public host key, pinned)."))
    destroy: str = Field(min_length=1, max_length=2000, description=(
        "A command run on the server's host, with the worker's name as its last argument."))
    min: int = Field(0, ge=0, le=100, description="Dynamic workers kept warm, idle or not.")
    max: int = Field(1, ge=0, le=100, description=(
        "Dynamic workers at most; those above it are destroyed once idle (0: all of them)."))
    capacity: int = Field(1, ge=1, le=64, description="Slots on each worker it makes.")
    idle_s: float = Field(300.0, ge=0, le=7 * 86400, description=(
        "A dynamic worker idle this long is destroyed (above min)."))
    wait_s: float = Field(10.0, ge=0, le=86400, description=(
        "A step that has waited this long for a slot asks for a new worker."))
    timeout_s: float = Field(120.0, ge=1, le=3600, description=(
        "Either command is stopped after this long, and the attempt reported."))
    per_minute: int = Field(6, ge=1, le=600, description="Workers made in any minute, at most.")


class Provisioner(ProvisionerSet, Answer):
    """A pool's provisioner, with what it is doing."""

    state: Literal["ready", "creating", "destroying", "failing"] = Field(description=(
        "ready; creating or destroying a worker; failing: its last attempt failed (note "
        "says why) and it waits before the next."))
    note: str = Field(description="The last thing that happened to it.")
    note_at: str | None
    workers: int = Field(description="The dynamic workers it made that are alive now.")


class Pool(Answer):
    """A pool and its slots now. Its capacity is the capacity of its healthy, enabled, not
    draining members plus the slots still held on its other members, so `leased` never
    exceeds it."""

    name: str
    description: str
    default: bool = Field(description="Steps that name no pool run here.")
    engine: str = Field(description="The container engine its steps in an image use where "
                                     "a member is set to none (empty: the first that "
                                     "answers).")
    members: list[str] = Field(description="Its workers' names.")
    provisioner: Provisioner | None = Field(None, description=(
        "How it makes workers on demand (none: it has only the workers added to it)."))
    capacity: int = Field(description="Slots its members can hold.")
    leased: int = Field(description="Slots in use.")
    queued: int = Field(description="Steps waiting for a slot.")
    utilization: float = Field(description="leased / capacity (0 when it has no capacity).")
    healthy_workers: int
    workers: int = Field(description="Members.")
    draining_workers: int


class PoolMember(Answer):
    name: str
    status: WorkerStatus
    enabled: bool
    draining: bool
    capacity: int
    leased: int = Field(description="Slots in use on it.")
    reason: str
    dynamic: bool = Field(description="Made by the pool's provisioner.")
    leases: int = Field(deprecated=renamed("leased"))


class Lease(Answer):
    """A slot held by a step running on a worker."""

    run_id: int
    runbook: str
    position: int = Field(description="The step's position in its run (1 is the first).")
    step_name: str
    worker: str
    pool: str = Field(description="The pool it was taken through.")
    since: str | None
    worker_reason: str = Field(description="Why this worker was chosen.")
    orphan: str = Field(description="Why the slot is still held after the step ended "
                                    "(empty: the step runs).")
    step: str = Field(deprecated=renamed("step_name"))
    reason: str = Field(deprecated=renamed("worker_reason"))


class QueuedStep(Answer):
    """A step waiting for a free slot, first come, first served."""

    run_id: int
    position: int
    step_name: str
    pool: str
    worker: str | None = Field(description="Set when it waits for one worker (run_on all).")
    since: str | None
    node: str = Field("", description="The server node that executes its run.")
    step: str = Field(deprecated=renamed("step_name"))


# [unix time, leased, capacity, queued]
HistoryPoint = tuple[float, int, int, int]


class PoolDetail(Pool):
    """A pool opened: what is behind its figures."""

    member_workers: list[PoolMember]
    leases: list[Lease]
    queue: list[QueuedStep]
    usage_history: list[HistoryPoint] = Field(description="[unix time, leased, capacity, "
                                                          "queued], oldest first.")
    history: list[HistoryPoint] = Field(deprecated=renamed("usage_history"))
