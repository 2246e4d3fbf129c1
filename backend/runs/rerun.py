"""Running a run again: the runbook as that run had it, in its environment, with its
values (sensitive ones given again: they are never kept for this), from a step on. The
steps before that step are not run again; the two runs name each other."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from backend.errors import Conflict, InvalidInput, NotFound
from backend.store.db import Store
from backend.store.models import CANCELLED, FAILED, INTERRUPTED, Run, RunStep
from wire.runbook import RunbookDef
from wire.runs import LaunchRequest

# A step that did not end well: where --from-failed starts.
NOT_WELL = (FAILED, INTERRUPTED, CANCELLED)


@dataclass(frozen=True)
class Rerun:
    run_id: int  # the run run again
    definition: RunbookDef  # as that run had it
    from_step: int


def prepare_rerun(store: Store, run_id: int, *, from_step: int | None = None,
                  from_failed: bool = False, sensitive: dict[str, str] | None = None
                  ) -> tuple[LaunchRequest, Rerun, str]:
    """(the launch, the rerun, why) for running run `run_id` again, or a refusal."""
    if from_step is not None and from_failed:
        raise InvalidInput("Give a step to rerun from, or rerun from the failed step: not "
                           "both.")
    with store.read() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"No run has the id {run_id}.")
        steps = session.exec(select(RunStep).where(RunStep.run_id == run_id)).all()
    if run.finished_at is None:
        raise Conflict(f"Run {run_id} is still {run.status}: rerun it once it has ended.")
    definition = RunbookDef.model_validate_json(run.definition)
    count = len(definition.steps)
    if from_failed:
        gone_wrong = sorted(s.position for s in steps if s.status in NOT_WELL)
        if not gone_wrong:
            raise InvalidInput(f"Run {run_id} has no failed step (it {run.status}): rerun "
                               "it whole, or from a step you name.")
        from_step = gone_wrong[0]
    start = from_step or 1
    if not 1 <= start <= count:
        raise InvalidInput(f"Run {run_id}'s runbook has steps 1 to {count}: there is no step "
                           f"{start}.")
    given = sensitive or {}
    secret_names = {v.name for v in definition.variables if v.sensitive}
    kept = sorted(set(given) - secret_names)
    if kept:
        raise InvalidInput(f"{kept[0]!r} is not a sensitive variable of this run: its value "
                           f"is kept from run {run_id}.")
    cause = f"rerun of run {run_id}" + (
        f" from step {start} ({definition.steps[start - 1].name})" if start > 1 else "")
    request = LaunchRequest(runbook=run.runbook, environment=run.environment,
                            variables={**json.loads(run.variables), **given},
                            guided=run.guided, step_through=run.step_through)
    return request, Rerun(run_id, definition, start), cause


def run_pools(definition: RunbookDef, environment: str) -> frozenset[str]:
    """The pools a run's steps run in (its runbook as it had it, in its environment)."""
    from backend.runs.launch import resolve_pool

    pools = set()
    for step in definition.steps:
        if step.manual is None:
            with contextlib.suppress(InvalidInput):
                pools.add(resolve_pool(definition, step, environment))
    return frozenset(pools)


def run_notice(store: Store, run_id: int) -> tuple[dict[str, Any], frozenset[str]]:
    """A run as a notification tells of it, and its pools: one light read (its steps,
    not its decisions), beside runs going on."""
    from backend.runs.course import run_public

    with store.read() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"No run has the id {run_id}.")
        steps = list(session.exec(select(RunStep).where(RunStep.run_id == run_id)).all())
    return run_public(run, steps), run_pools(RunbookDef.model_validate_json(run.definition),
                                             run.environment)
