"""The statuses of workers, runs and steps, as the API, the JSON and the console name them."""

from __future__ import annotations

from typing import Literal

# Worker statuses, from best to worst; `disabled` and `unknown` sit outside that order.
HEALTHY = "healthy"
WARNING = "warning"
UNHEALTHY = "unhealthy"
UNAVAILABLE = "unavailable"
UNKNOWN = "unknown"
DISABLED = "disabled"
STATUSES = (HEALTHY, WARNING, UNHEALTHY, UNAVAILABLE, UNKNOWN, DISABLED)
WorkerStatus = Literal["healthy", "warning", "unhealthy", "unavailable", "unknown", "disabled"]

# Run statuses (DESIGN.md); a step has these too, and two of its own.
QUEUED, RUNNING, WAITING = "queued", "running", "waiting"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
SKIPPED, LOST = "skipped", "lost"
FINISHED = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled",
                    "interrupted"]
StepStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled",
                     "interrupted", "skipped", "lost"]

# What an operator may answer a waiting run.
Action = Literal["continue", "skip", "retry", "approve", "abort"]
