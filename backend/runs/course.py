"""A run's course: how it went so far (which decides what its next steps do), what it
waits for, and the shapes in which a run is shown."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from backend.fleet import iso
from backend.store.models import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    WAITING,
    Decision,
    Run,
    RunStep,
)
from wire.runbook import Step

STEP_ACTIONS = {"continue", "skip", "abort"}
FAILURE_ACTIONS = {"retry", "skip", "abort"}
MANUAL_ACTIONS = {"approve", "abort"}


@dataclass
class RunState:
    """How a run's course went so far, which decides what its next steps do.

    After a failure, an abort or a first cancel, only the steps whose condition is
    "failure" or "always" run (the cleanup); an abort during the cleanup, or a second
    cancel, stops the cleanup too."""

    position: int = 0
    failed: bool = False
    aborted_at: str = ""  # "step 3 (Restart)" once an operator aborted there
    aborted_by: str = ""
    cancelled_by: str = ""
    cancels: int = 0
    halted: bool = False  # nothing more runs
    activity: asyncio.Future[str] | None = None  # the current step's work
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set when one begins
    parked: bool = False  # the server stopped while the run waited: it waits on after
    sensitive: frozenset[str] = frozenset()  # the variables whose values are secrets
    four_eyes: bool = False  # its environment's: manual steps need another person

    SAVED = ("position", "failed", "aborted_at", "aborted_by", "cancelled_by", "cancels",
             "halted")

    def saved(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SAVED}

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> RunState:
        return cls(**{name: saved[name] for name in cls.SAVED if name in saved})

    @property
    def stopped(self) -> str:
        """Why only cleanup steps run now: "aborted", "cancelled" or ""."""
        return "cancelled" if self.cancels else "aborted" if self.aborted_at else ""

    def wants(self, condition: str) -> bool:
        if self.halted:
            return False
        if condition == "always":
            return True
        went_wrong = self.failed or bool(self.stopped)
        return went_wrong if condition == "failure" else not went_wrong

    def skip_reason(self, condition: str) -> str:
        if self.halted or self.stopped:
            return f"not run: the run was {self.stopped}"
        return f"condition {condition!r} not met"

    def abort(self, position: int, step: Step) -> None:
        if self.stopped:
            self.halted = True  # an abort during the cleanup ends it
        if not self.aborted_at:
            self.aborted_at = f"step {position} ({step.name})"

    def outcome(self) -> tuple[str, str]:
        if self.cancels:
            return CANCELLED, f"cancelled by {self.cancelled_by}"
        if self.aborted_at:
            by = f" by {self.aborted_by}" if self.aborted_by else ""
            return FAILED, f"aborted{by} at {self.aborted_at}"
        if self.failed:
            return FAILED, "a step failed"
        return SUCCEEDED, ""


@dataclass
class Waiting:
    position: int  # 0: the run's start (four eyes on its environment)
    actions: set[str]
    prompt: str
    future: asyncio.Future[tuple[str, str, str]] | None
    excluded: str = ""  # the person who may not approve (who launched the run), if any


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A run as lists carry it: without its steps, decisions and reruns (`GET
    /api/runs/ID` has them), so that a list of runs stays small however long their
    runbooks are. (The push stream's runs once carried `reruns`, which its contract
    does not have.)"""
    return {key: value for key, value in run.items()
            if key not in ("steps", "decisions", "reruns")}


def stored_waiting(run: Run) -> Waiting | None:
    """What a run waits for, as stored with it (for a run another node executes)."""
    if run.status != WAITING or not run.waiting:
        return None
    saved = json.loads(run.waiting)
    if "actions" not in saved:  # stored by a Workdeck from before nodes
        return None
    # No future: the node that executes the run awaits the answer.
    return Waiting(saved["position"], set(saved["actions"]), saved["prompt"], None,
                   saved.get("excluded", ""))


def run_public(run: Run, steps: list[RunStep], waiting: Waiting | None = None,
               decisions: list[Decision] | None = None) -> dict[str, Any]:
    definition = json.loads(run.definition)
    waiting = waiting or stored_waiting(run)
    shown = {} if decisions is None else {"decisions": [
        {"at": iso(d.at), "actor": d.actor, "action": d.action, "position": d.position,
         "note": d.note} for d in decisions]}
    return {**shown, "step_count": len(definition["steps"]),
        "id": run.id, "runbook": run.runbook, "environment": run.environment,
        "status": run.status, "reason": run.reason, "guided": run.guided,
        "step_through": run.step_through, "actor": run.actor, "person": run.person,
        "created_at": iso(run.created_at), "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at), "variables": json.loads(run.variables),
        "sensitive": [v["name"] for v in definition["variables"] if v["sensitive"]],
        "steps": [
            {"position": s.position, "name": s.name, "worker": s.worker, "status": s.status,
             "reason": s.reason, "worker_reason": s.worker_reason, "attempt": s.attempt,
             "exit_status": s.exit_status,
             "started_at": iso(s.started_at), "finished_at": iso(s.finished_at),
             "manual": definition["steps"][s.position - 1].get("manual")}
            for s in sorted(steps, key=lambda s: (s.position, s.worker))
        ],
        "waiting": None if waiting is None else {
            "position": waiting.position, "actions": sorted(waiting.actions),
            "prompt": waiting.prompt, "another_person": bool(waiting.excluded)},
        "node": run.node, "cause": run.cause, "schedule": run.schedule,
        "rerun_of": run.rerun_of, "from_step": run.from_step,
    }
