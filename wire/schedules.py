"""Schedules on the wire: a runbook launched at the times of a cron expression."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wire.base import Answer


class ScheduledRun(Answer):
    id: int
    status: str
    created_at: str | None
    finished_at: str | None


class Schedule(Answer):
    name: str
    runbook: str
    environment: str
    cron: str = Field(description="Five fields: minute hour day-of-month month day-of-week.")
    explained: str = Field(description="The expression in words.")
    timezone: str = Field(description="Its times are of this zone (daylight saving and all).")
    variables: dict[str, str] = Field(description="Its values, sensitive ones left out.")
    keeps_sensitive: bool = Field(description="It keeps sensitive values (encrypted).")
    person: str = Field(description="Whose launches they are: their grants are checked at "
                                    "each one.")
    actor: str = Field(description="Who made it, how and from where.")
    overlap: bool = Field(description="It may launch while its last run still runs.")
    missed: Literal["skip", "once"] = Field(description=(
        "What becomes of times missed while no server ran: skipped, or run once for all."))
    paused: bool
    created_at: str | None
    next_at: str | None = Field(description="Its next time (none while paused).")
    last_at: str | None = Field(description="The time it last came due.")
    last_run_id: int | None
    last_outcome: str = Field(description="What came of its last time: a run launched, "
                                          "or why none was.")
    runs: list[ScheduledRun] = Field(description="Its newest runs (on `GET "
                                                 "/api/schedules/NAME` only).")


class ScheduleRequest(BaseModel):
    name: str
    runbook: str
    environment: str
    cron: str = Field(description="As in `0 3 * * 1-5`, or @hourly, @daily, @weekly, "
                                  "@monthly, @yearly.")
    timezone: str = "UTC"
    variables: dict[str, str] = Field(default_factory=dict)
    overlap: bool = False
    missed: Literal["skip", "once"] = "skip"


class ScheduleUpdate(BaseModel):
    paused: bool
