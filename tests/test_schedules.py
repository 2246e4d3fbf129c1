"""Schedules with an injected clock (no waiting for real minutes), on both stores: due
times in a time zone across daylight-saving changes, pause and resume, times missed while
no server ran (skipped or run once), no overlap with its own unfinished run, exactly one
launch per time among several nodes, a refused launch recorded; expressions and zones
refused with a sentence naming what is wrong."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from conftest import both_stores
from sqlmodel import select

from backend.errors import Forbidden, InvalidInput
from backend.runs import runbooks, schedules
from backend.runs.launch import add_environment
from backend.runs.schedules import Scheduler, cron_expression, next_time, time_zone
from backend.runs.vault import Vault
from backend.store.models import SUCCEEDED, Run, Schedule
from wire.runbook import RunbookDef, Step, Variable

pytestmark = both_stores

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def __call__(self) -> datetime:
        return self.at


class Launches:
    """Runs made as a launch makes them (a row of the schedule), finished on demand."""

    def __init__(self, store, refuse: Exception | None = None) -> None:
        self.store = store
        self.refuse = refuse
        self.causes: list[str] = []

    async def __call__(self, schedule: Schedule, cause: str) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.causes.append(cause)
        with self.store.write() as session:
            run = Run(runbook=schedule.runbook, environment=schedule.environment,
                      definition="{}", schedule=schedule.name, cause=cause)
            session.add(run)
            session.flush()
            return run.id

    def finish_all(self) -> None:
        with self.store.write() as session:
            for run in session.exec(select(Run)).all():
                run.status, run.finished_at = SUCCEEDED, datetime.now(UTC)
                session.add(run)


@pytest.fixture
def store(make_store, tmp_path):
    store = make_store()
    add_environment(store, "Production", "test")
    runbooks.save(store, RunbookDef(name="Nightly", variables=[
        Variable(name="target", default="all"), Variable(name="token", sensitive=True)],
        steps=[Step(name="Look", manual="look")]), "test")
    store.vault = Vault(tmp_path / "secret.key")
    return store


def add(store, clock, name="nightly", cron="0 3 * * 1-5", zone=BERLIN, **options):
    made = schedules.add_schedule(
        store, store.vault, name=name, runbook="Nightly", environment="Production",
        cron=cron, timezone=zone, variables={"token": "a-long-secret-value"},
        overlap=options.get("overlap", False), missed=options.get("missed", "skip"),
        person="alice", actor="alice (laptop)", now=clock())
    return made


def shown(store, name="nightly"):
    return schedules.get_schedule(store, name)


def test_expressions_and_zones_are_refused_with_a_sentence_naming_the_field():
    with pytest.raises(InvalidInput) as bad:
        cron_expression("61 * * * *")
    assert str(bad.value) == ("In the cron expression '61 * * * *', the minute field '61' "
                              "is not valid (minute: 0-59, with * , - and /).")
    with pytest.raises(InvalidInput) as bad:
        cron_expression("0 3 * * MON-XYZ")
    assert "the day-of-week field 'MON-XYZ' is not valid" in str(bad.value)
    with pytest.raises(InvalidInput) as bad:
        cron_expression("0 3 * *")
    assert str(bad.value).startswith("The cron expression '0 3 * *' has 4 fields: it needs "
                                      "five (minute hour day-of-month month day-of-week)")
    assert cron_expression("@daily") == "0 0 * * *"
    assert cron_expression("  0  3 * *   1-5 ") == "0 3 * * 1-5"
    with pytest.raises(InvalidInput) as bad:
        time_zone("Mars/Olympus")
    assert str(bad.value) == ("No time zone is named 'Mars/Olympus': give one such as "
                              "Europe/Berlin, America/New_York or UTC.")


def test_times_in_a_zone_across_daylight_saving_changes():
    # 02:30 does not exist in Berlin on 29 March 2026 (clocks go 02:00 -> 03:00): 03:00.
    spring = [next_time("30 2 * * *", BERLIN, utc(2026, 3, 28, 12))]
    spring.append(next_time("30 2 * * *", BERLIN, spring[0]))
    assert spring == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    # 02:30 happens twice on 25 October 2026 (03:00 -> 02:00): once, the first.
    autumn = [next_time("30 2 * * *", BERLIN, utc(2026, 10, 24, 12))]
    autumn.append(next_time("30 2 * * *", BERLIN, autumn[0]))
    assert autumn == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # Weekdays at 03:00 Berlin: winter time is UTC+1.
    assert next_time("0 3 * * 1-5", BERLIN, utc(2026, 12, 4, 12)) == utc(2026, 12, 7, 2)


async def test_a_schedule_launches_at_its_times_in_its_zone(store):
    clock = Clock(utc(2026, 12, 6, 12))  # a Sunday
    made = add(store, clock)
    assert made["next_at"] == utc(2026, 12, 7, 2).isoformat()  # Monday 03:00 CET
    assert made["explained"] == "At 03:00 on Monday through Friday"
    launches = Launches(store)
    scheduler = Scheduler(store, launches, now=clock)
    clock.at = utc(2026, 12, 7, 1, 59, 59)
    assert await scheduler.pass_once() == []
    clock.at = utc(2026, 12, 7, 2, 0, 1)
    [run_id] = await scheduler.pass_once()
    assert launches.causes == ["schedule nightly (2026-12-07 03:00 CET)"]
    assert await scheduler.pass_once() == []  # once per time
    after = shown(store)
    assert after["next_at"] == utc(2026, 12, 8, 2).isoformat()
    assert after["last_run_id"] == run_id
    assert after["last_outcome"] == f"2026-12-07 03:00 CET: launched run {run_id}"
    assert [r["id"] for r in after["runs"]] == [run_id]


async def test_paused_a_schedule_launches_nothing_and_resumed_goes_on_from_then(store):
    clock = Clock(utc(2026, 12, 6, 12))
    add(store, clock)
    launches = Launches(store)
    scheduler = Scheduler(store, launches, now=clock)
    paused = schedules.set_paused(store, "nightly", True, "alice", now=clock())
    assert paused["paused"] and paused["next_at"] is None
    clock.at = utc(2026, 12, 9, 12)  # Monday to Wednesday's times pass
    assert await scheduler.pass_once() == []
    resumed = schedules.set_paused(store, "nightly", False, "alice", now=clock())
    # Paused times are not missed ones: it goes on from now, Thursday 03:00.
    assert resumed["next_at"] == utc(2026, 12, 10, 2).isoformat()
    assert await scheduler.pass_once() == [] and launches.causes == []


@pytest.mark.parametrize("missed", ["skip", "once"])
async def test_times_missed_while_no_server_ran_are_skipped_or_run_once(store, missed):
    clock = Clock(utc(2026, 12, 6, 12))
    add(store, clock, missed=missed)
    launches = Launches(store)
    # The server was down from Sunday to Thursday noon: Monday to Thursday's 03:00 passed.
    clock.at = utc(2026, 12, 10, 12)
    launched = await Scheduler(store, launches, now=clock).pass_once()
    after = shown(store)
    assert after["next_at"] == utc(2026, 12, 11, 2).isoformat()  # Friday, not before
    if missed == "skip":
        assert launched == []
        assert after["last_outcome"] == ("missed 4 times while no server ran, the last at "
                                         "2026-12-10 03:00 CET: skipped (it skips missed "
                                         "times)")
    else:
        assert len(launched) == 1
        assert launches.causes == ["schedule nightly, missed 4 times while no server ran, "
                                   "the last at 2026-12-10 03:00 CET: run once for them"]


async def test_a_time_a_little_late_is_on_time_and_later_is_missed(store):
    clock = Clock(utc(2026, 12, 6, 12))
    add(store, clock)
    launches = Launches(store)
    scheduler = Scheduler(store, launches, now=clock)
    clock.at = utc(2026, 12, 7, 2, 1, 30)  # 90 s late: a busy store, a slow pass
    assert len(await scheduler.pass_once()) == 1
    clock.at = utc(2026, 12, 8, 2, 5)  # 5 minutes late: no server ran at 03:00
    assert await scheduler.pass_once() == []
    assert shown(store)["last_outcome"].startswith("missed 1 time while no server ran")
    assert launches.causes == ["schedule nightly (2026-12-07 03:00 CET)"]


async def test_a_schedule_does_not_launch_beside_its_own_unfinished_run(store):
    clock = Clock(utc(2026, 12, 6, 12))
    add(store, clock, cron="*/5 * * * *", zone="UTC")
    add(store, clock, name="overlapping", cron="*/5 * * * *", zone="UTC", overlap=True)
    launches = Launches(store)
    scheduler = Scheduler(store, launches, now=clock)
    clock.at = utc(2026, 12, 6, 12, 5, 1)
    first = await scheduler.pass_once()
    assert len(first) == 2
    clock.at = utc(2026, 12, 6, 12, 10, 1)
    second = await scheduler.pass_once()
    assert len(second) == 1  # only the one that may overlap
    nightly = shown(store)
    assert nightly["last_outcome"] == (f"2026-12-06 12:10 UTC: not launched, run "
                                       f"{nightly['last_run_id']} of this schedule still runs")
    launches.finish_all()
    clock.at = utc(2026, 12, 6, 12, 15, 1)
    assert len(await scheduler.pass_once()) == 2


async def test_of_several_nodes_exactly_one_launches_each_time(store, make_store):
    clock = Clock(utc(2026, 12, 6, 12))
    add(store, clock, cron="* * * * *", zone="UTC", overlap=True)
    launches = Launches(store)
    nodes = [Scheduler(make_store(), launches, now=clock) for _ in range(4)]
    for minute in range(1, 6):
        clock.at = utc(2026, 12, 6, 12, minute, 0, 500)
        launched = await asyncio.gather(*(node.pass_once() for node in nodes))
        assert sum(len(runs) for runs in launched) == 1, (minute, launched)
    assert len(launches.causes) == 5


async def test_a_refused_launch_is_recorded_and_the_schedule_goes_on(store):
    clock = Clock(utc(2026, 12, 6, 12))
    add(store, clock)
    refusal = Forbidden("alice (viewer) may not launch runs on Production.")
    scheduler = Scheduler(store, Launches(store, refuse=refusal), now=clock)
    clock.at = utc(2026, 12, 7, 2, 0, 30)
    assert await scheduler.pass_once() == []
    after = shown(store)
    assert after["last_outcome"] == ("2026-12-07 03:00 CET: not launched: alice (viewer) "
                                     "may not launch runs on Production.")
    assert after["next_at"] == utc(2026, 12, 8, 2).isoformat()


def test_a_schedule_is_checked_as_a_launch_is_when_it_is_made(store):
    clock = Clock(utc(2026, 12, 6, 12))
    with pytest.raises(InvalidInput) as bad:
        schedules.add_schedule(store, store.vault, name="n", runbook="Nightly",
                               environment="Production", cron="0 3 * * *", timezone="UTC",
                               variables={}, overlap=False, missed="skip", person="alice",
                               actor="alice", now=clock())
    assert str(bad.value) == "Variable 'token' needs a value."
    made = add(store, clock)
    # The sensitive value is kept sealed, never shown; the others as given.
    assert made["variables"] == {} and made["keeps_sensitive"]
    with store.read() as session:
        sealed = session.exec(select(Schedule.secrets)).one()
    assert "a-long-secret-value" not in sealed
    assert store.vault.open(sealed) == {"token": "a-long-secret-value"}
    with pytest.raises(Exception, match="already exists"):
        add(store, clock)


def test_next_time_is_after_the_time_given():
    at = utc(2026, 12, 7, 2)
    assert next_time("0 3 * * 1-5", BERLIN, at) == at + timedelta(days=1)
