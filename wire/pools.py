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
    description: str


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
