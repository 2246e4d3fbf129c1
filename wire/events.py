"""The push stream (`GET /api/events`): a snapshot of the fleet, then batches of changes.

Server-Sent Events: first `event: snapshot` with a `Snapshot`, then `event: changes`
with a list of `Change`s, each carrying the whole object as it is now (a slow reader
gets the latest state of what changed, never a backlog), and `: heartbeat` comments
while nothing changes. The console keeps its copy of the fleet from it (console/state.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from wire.base import Answer, renamed
from wire.people import Whoami
from wire.pools import HistoryPoint, Pool
from wire.runbook import RunbookSummary
from wire.runs import Environment, Run, RunSummary, Waiting
from wire.server import ServerStatus
from wire.statuses import RunStatus
from wire.workers import Worker


class AdviceCounts(Answer):
    """How many findings the advisor has, and how many of them are critical."""

    findings: int
    critical: int


class Usage(Answer):
    """A pool's figures, sent when one of them moves (the pool's other fields stay)."""

    pool: str
    at: float = Field(description="Unix time of the sample.")
    capacity: int
    leased: int
    queued: int
    utilization: float
    healthy_workers: int
    workers: int
    draining_workers: int


class Snapshot(Answer):
    """The fleet when the stream opens. Workers go as rows under one list of columns
    (their keys repeated ten thousand times were half the snapshot); each row, zipped
    with `worker_columns`, is a `Worker`."""

    worker_columns: list[str]
    worker_rows: list[list[Any]]
    pools: list[Pool]
    usage_history: dict[str, list[HistoryPoint]] = Field(
        description="Per pool, [unix time, leased, capacity, queued], oldest first.")
    runs: list[RunSummary] = Field(description="The newest runs, newest first.")
    advice: AdviceCounts | None = Field(description="Null until the advisor has counted "
                                                    "once.")
    runbooks: list[RunbookSummary]
    environments: list[str]
    four_eyes: list[str] = Field(default_factory=list, description=(
        "The environments where every launch and manual step needs another person's "
        "approval."))
    server: ServerStatus
    you: Whoami | None = Field(None, description="Who the server takes the stream's reader "
                                                 "for (as GET /api/whoami says).")


class _Change(Answer):
    key: str = Field(description="The object's name (a run's id as text).")


class WorkerChanged(_Change):
    type: Literal["worker"]
    data: Worker


class PoolChanged(_Change):
    type: Literal["pool"]
    data: Pool


class UsageChanged(_Change):
    type: Literal["usage"]
    data: Usage


class RunChanged(_Change):
    type: Literal["run"]
    data: Run


class RunbookChanged(_Change):
    type: Literal["runbook"]
    data: RunbookSummary


class EnvironmentAdded(_Change):
    """An environment added or changed."""

    type: Literal["environment"]
    data: Environment


class AdviceChanged(_Change):
    type: Literal["advice"]
    data: AdviceCounts


class ServerChanged(_Change):
    type: Literal["server"]
    data: ServerStatus


class PeopleChanged(_Change):
    """People, their grants or their tokens changed: a console asks again who it is (GET
    /api/whoami) and, where it shows them, who the people are."""

    type: Literal["people"]
    data: dict[str, Any] = Field(default_factory=dict)


class Removed(_Change):
    type: Literal["worker.removed", "runbook.removed"]
    data: None = None


Change = Annotated[
    WorkerChanged | PoolChanged | UsageChanged | RunChanged | RunbookChanged
    | EnvironmentAdded | AdviceChanged | ServerChanged | PeopleChanged | Removed,
    Field(discriminator="type")]

CHANGES: TypeAdapter[list[Change]] = TypeAdapter(list[Change])


# The log stream (`GET /api/runs/{id}/log`): `chunks`, `skipped`, `waiting`, then `end`.

class LogChunk(Answer):
    """Lines read together from one step's stream, in their stored form: one line per
    `\\n`, the first of each read from the worker `<unix time>\\t<text>` (wire.logcodec)."""

    first_seq: int
    last_seq: int
    position: int = Field(description="The step's position in its run (0: the run's own "
                                      "lines).")
    worker: str
    stream: Literal["stdout", "stderr", "workdeck"] = Field(
        description="`workdeck`: what the run engine itself said.")
    lines: str
    step: int = Field(deprecated=renamed("position"))


class Skipped(Answer):
    """The lines numbered after `after` up to `to` were left out (a reader that keeps only
    the last lines fell further behind than that)."""

    after: int
    to: int


class WaitingNow(Waiting):
    """The run waits for a decision (the event's data is null once it no longer does)."""

    run_id: int


class LogEnd(Answer):
    """The stream is over: the run finished, or nothing more was asked for."""

    status: RunStatus
    reason: str
    following: bool | None = Field(None, description="false: the run may go on, this "
                                                     "reader did not follow it.")
