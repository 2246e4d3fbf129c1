"""The servers ("nodes") using one store, on the wire."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wire.base import Answer


class Node(Answer):
    name: str
    state: Literal["up", "stopped", "lost"] = Field(description=(
        "up: heartbeating; stopped: it said so; lost: silent past the lease (dead, or cut "
        "off from the database)."))
    this: bool = Field(description="The node that answered.")
    address: str = Field(description="Where it listens.")
    host: str
    pid: int
    version: str
    started_at: str | None
    last_seen: str | None = Field(description="Its last heartbeat, by the database's time.")
    seen_s_ago: float
    draining: bool = Field(description="It finishes what it runs and takes no new runs.")
    workers_checked: int
    runs_executing: int


class NodeUpdate(BaseModel):
    draining: bool
