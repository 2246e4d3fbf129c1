"""Runs on the wire: a launch, the plan it would follow, a run with its steps, a decision,
a line found in a log; and the environments runs are launched into."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wire.base import Answer, renamed
from wire.statuses import Action, RunStatus, StepStatus


class LaunchRequest(BaseModel):
    runbook: str
    environment: str | None = Field(None, description="Needed when more than one is "
                                                      "defined.")
    variables: dict[str, str] = Field(default_factory=dict)
    guided: bool = Field(False, description="On a failed step, wait for retry, skip or abort.")
    step_through: bool = Field(False, description="Wait before each step for continue, skip "
                                                  "or abort.")


class RerunRequest(BaseModel):
    from_step: int | None = Field(None, ge=1, le=10_000, description=(
        "The step to start from (those before it are not run again); none: the first."))
    from_failed: bool = Field(False, description="Start from the run's first failed step.")
    variables: dict[str, str] = Field(default_factory=dict, description=(
        "Its sensitive values, given again (never kept for a rerun); the others are the "
        "run's."))


class DecisionRequest(BaseModel):
    # A string rather than the Action literal: an answer the run does not wait for is
    # refused with a sentence naming the ones it does.
    action: str = Field(description="continue, skip, retry, approve or abort.")
    note: str = ""


class RunStep(Answer):
    """One step of a run on one worker (a `run_on = "all"` step has one per worker)."""

    position: int = Field(description="Its place in the runbook (1 is the first).")
    name: str
    worker: str = Field(description="Empty until a worker was chosen.")
    status: StepStatus
    reason: str = Field(description="Why it is in its status: why it failed or was skipped, "
                                    "what it waits for (empty once it ran well).")
    worker_reason: str = Field(description="Why its worker was chosen (empty until one was).")
    attempt: int
    exit_status: int | None
    started_at: str | None
    finished_at: str | None
    manual: str | None = Field(description="A manual step's instructions.")


class Waiting(Answer):
    """What a waiting run needs from an operator."""

    position: int = Field(description="The step it waits at (0: its start, which four eyes "
                                      "on its environment hold until approved).")
    actions: list[Action]
    prompt: str
    another_person: bool = Field(False, description=(
        "Only someone other than whoever launched the run may approve (four eyes)."))


class Decision(Answer):
    """An operator's answer to a waiting run, as recorded."""

    at: str | None
    actor: str
    action: Action | Literal["cancel"]
    position: int | None = Field(description="The step it answered (0: the run's start; "
                                             "none: a cancel).")
    note: str


class RunSummary(Answer):
    """A run as lists carry it: without its steps and decisions."""

    id: int
    runbook: str
    environment: str
    status: RunStatus
    reason: str
    guided: bool
    step_through: bool
    actor: str = Field(description="Who launched it, how and from where.")
    person: str = Field("", description="The person who launched it (whom four eyes keep "
                                        "from approving it).")
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    variables: dict[str, str] = Field(description="Its values, sensitive ones left out.")
    sensitive: list[str] = Field(description="The names of its sensitive variables.")
    step_count: int = Field(description="Steps in its runbook.")
    waiting: Waiting | None
    node: str = Field("", description="The server node that executes it (\"\" until "
                                       "one claims it).")
    cause: str = Field("", description="Why it was launched when not by hand: a schedule "
                                       "(and its time), a rerun.")
    schedule: str = Field("", description="The schedule that launched it.")
    rerun_of: int | None = Field(None, description="The run it runs again.")
    from_step: int = Field(1, description="A rerun's first step: those before it were "
                                          "not run again.")


class Run(RunSummary):
    steps: list[RunStep]
    decisions: list[Decision]
    reruns: list[int] = Field(default_factory=list, description="The runs that run it "
                                                                "again, oldest first.")


class Skip(Answer):
    worker: str
    why: str


class PlannedStep(Answer):
    """What a step would do if the run were launched now (pool figures: none for a
    manual step, which runs on no worker)."""

    name: str
    manual: bool
    pool: str = Field(description="Empty for a manual step.")
    run_on: Literal["any", "all"]
    condition: Literal["success", "failure", "always"]
    healthy_workers: int | None = None
    workers: int | None = None
    leased: int | None = None
    capacity: int | None = None
    queued: int | None = None
    would_take: list[str] | None = Field(None, description="The workers it would take now "
                                                           "(none: it would queue).")
    would_skip: list[Skip] | None = Field(None, description="Members a run_on = \"all\" "
                                                            "step would leave out, and why.")
    healthy: int | None = Field(None, deprecated=renamed("healthy_workers"))


class Plan(Answer):
    runbook: str
    environment: str
    variables: dict[str, str]
    sensitive: list[str]
    missing: list[str] = Field(description="Variables that need a value and have none.")
    steps: list[PlannedStep]


class LogLine(Answer):
    seq: int = Field(description="The line's number in its run's log (1 is the first).")
    at: float = Field(description="Unix time.")
    position: int = Field(description="The step's position (0: the run's own lines).")
    worker: str
    stream: Literal["stdout", "stderr", "workdeck"]
    text: str
    step: int = Field(deprecated=renamed("position"))


class FoundLine(Answer):
    line: LogLine | None = Field(description="None: no such line.")


class EnvironmentCreate(BaseModel):
    name: str
    four_eyes: bool = Field(False, description=(
        "Every launch and manual step there needs another person's approval."))


class EnvironmentChange(BaseModel):
    four_eyes: bool


class Environment(Answer):
    name: str
    four_eyes: bool = Field(False, description=(
        "Every launch and manual step there needs another person's approval."))
