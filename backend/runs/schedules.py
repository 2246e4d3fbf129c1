"""Schedules: a runbook launched at the times of a cron expression, in a time zone, as
the person who made it.

Each schedule keeps its next time in the store. A pass takes every schedule whose time
has come, moves its next time on with a compare-and-set (so that of several nodes, and
of a pass begun twice, exactly one launches that time), then launches: as its person,
with the grants they hold then; never beside its own unfinished run unless it says so.
A time more than GRACE_S late was missed (the server was down over it): a schedule
skips its missed times, or runs once for all of them, as it says.

Times are computed in the schedule's time zone by cronsim, so a daily 02:30 in Berlin is
at 03:00 on the day the clocks go forward and once, not twice, on the day they go back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlmodel import col, select, update

from backend.errors import Conflict, InvalidInput, NotFound, WorkdeckError
from backend.events import woken
from backend.fleet import audit, validation
from backend.fleet.audit import iso
from backend.runs.launch import prepare
from backend.runs.vault import Vault
from backend.store.db import Store, pass_failed
from backend.store.models import Run, Schedule, aware, utcnow
from wire.runs import LaunchRequest

log = logging.getLogger(__name__)

GRACE_S = 120.0  # a time this late is still on time (a busy store, a slow pass)
LOOK_EVERY_S = 30.0  # at the latest, even when no schedule is due sooner
MISSED = ("skip", "once")
FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"),
          ("month", "1-12 or JAN-DEC"), ("day-of-week", "0-7 or SUN-SAT"))
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
           "@annually": "0 0 1 1 *"}
COUNT_MISSED = 10_000  # missed times counted one by one up to this many

# (schedule, cause) -> the run launched; refusals are WorkdeckErrors, said as they are.
Launcher = Callable[[Schedule, str], Awaitable[int]]


def cron_expression(text: str) -> str:
    """The expression as stored (aliases written out), or a refusal naming its field."""
    expression = ALIASES.get(text.strip().lower(), " ".join(text.split()))
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise InvalidInput(
            f"The cron expression {text!r} has {len(parts)} field"
            f"{'' if len(parts) == 1 else 's'}: it needs five (minute hour day-of-month "
            "month day-of-week), as in '0 3 * * 1-5', or one of "
            f"{', '.join(ALIASES)}.")
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        said = str(exc)
        for index, (field, values) in enumerate(FIELDS):
            if said == f"Bad {field}":
                raise InvalidInput(f"In the cron expression {text!r}, the {field} field "
                                   f"{parts[index]!r} is not valid ({field}: {values}, "
                                   "with * , - and /).") from None
        raise InvalidInput(f"The cron expression {text!r} is not valid: {said}.") from None
    return expression


def time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"No time zone is named {name!r}: give one such as Europe/Berlin, "
                           "America/New_York or UTC.") from None
    return name


def explain(expression: str) -> str:
    """The expression in words: "At 03:00 on Monday through Friday"."""
    try:
        return CronSim(expression, datetime.now(UTC)).explain()
    except Exception:  # its words are a courtesy; the expression itself was checked
        return expression


def times(expression: str, zone: str, after: datetime) -> Iterator[datetime]:
    """The expression's times strictly after `after`, in UTC."""
    local = aware(after).astimezone(ZoneInfo(zone))
    for found in CronSim(expression, local):
        yield found.astimezone(UTC)


def next_time(expression: str, zone: str, after: datetime) -> datetime:
    return next(times(expression, zone, after))


# ------------------------------------------------------------------ stored schedules


def public(schedule: Schedule, runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": schedule.name, "runbook": schedule.runbook,
            "environment": schedule.environment, "cron": schedule.cron,
            "explained": explain(schedule.cron), "timezone": schedule.timezone,
            "variables": json.loads(schedule.variables),
            "keeps_sensitive": bool(schedule.secrets),
            "person": schedule.person, "actor": schedule.actor,
            "overlap": schedule.overlap, "missed": schedule.missed,
            "paused": schedule.paused, "created_at": iso(schedule.created_at),
            "next_at": iso(schedule.next_at), "last_at": iso(schedule.last_at),
            "last_run_id": schedule.last_run_id, "last_outcome": schedule.last_outcome,
            "runs": runs if runs is not None else []}


def _find(session: Any, name: str) -> Schedule:
    found = session.exec(select(Schedule).where(Schedule.name == name)).first()
    if found is None:
        raise NotFound(f"No schedule is named {name!r}.")
    return found


def list_schedules(store: Store, runbook: str | None = None) -> list[dict[str, Any]]:
    with store.read() as session:
        query = select(Schedule).order_by(Schedule.name)
        if runbook is not None:
            query = query.where(Schedule.runbook == runbook)
        return [public(s) for s in session.exec(query).all()]


def get_schedule(store: Store, name: str, recent: int = 10) -> dict[str, Any]:
    with store.read() as session:
        schedule = _find(session, name)
        runs = session.exec(select(Run).where(Run.schedule == name)
                            .order_by(col(Run.id).desc()).limit(recent)).all()
        return public(schedule, [{"id": r.id, "status": r.status,
                                  "created_at": iso(r.created_at),
                                  "finished_at": iso(r.finished_at)} for r in runs])


def add_schedule(store: Store, vault: Vault, *, name: str, runbook: str, environment: str,
                 cron: str, timezone: str, variables: dict[str, str], overlap: bool,
                 missed: str, person: str, actor: str, now: datetime | None = None
                 ) -> dict[str, Any]:
    name = validation.name(name, "Schedule name")
    expression = cron_expression(cron)
    zone = time_zone(timezone or "UTC")
    if missed not in MISSED:
        raise InvalidInput(f"Missed times are either skipped or run once: give "
                           f"{' or '.join(MISSED)}, not {missed!r}.")
    # Checked as a launch is (its runbook, environment, values and pools), so that a
    # schedule that could not launch now is refused now, not at 3 in the morning.
    definition, environment, _values, _secrets, _pools = prepare(
        store, LaunchRequest(runbook=runbook, environment=environment, variables=variables))
    # Only the values given are kept: a default changed in the runbook holds from then on.
    sensitive = {v.name for v in definition.variables if v.sensitive}
    values = {k: v for k, v in variables.items() if k not in sensitive}
    secrets = {k: v for k, v in variables.items() if k in sensitive}
    first = next_time(expression, zone, now or utcnow())
    with store.write() as session:
        if session.exec(select(Schedule).where(Schedule.name == name)).first():
            raise Conflict(f"A schedule named {name!r} already exists.")
        schedule = Schedule(name=name, runbook=definition.name, environment=environment,
                            cron=expression, timezone=zone, variables=json.dumps(values),
                            secrets=vault.seal(secrets) if secrets else "", person=person,
                            actor=actor, overlap=overlap, missed=missed, next_at=first)
        session.add(schedule)
        audit(session, actor, "schedule.add", name,
              f"{definition.name} on {environment} at {expression} ({zone})")
        session.flush()
        return public(schedule)


def set_paused(store: Store, name: str, paused: bool, actor: str,
               now: datetime | None = None) -> dict[str, Any]:
    """Pause (no time comes due), or resume from now: the times passed meanwhile are not
    missed, they were paused."""
    with store.write() as session:
        schedule = _find(session, name)
        if schedule.paused != paused:
            schedule.paused = paused
            schedule.next_at = None if paused else next_time(
                schedule.cron, schedule.timezone, now or utcnow())
            session.add(schedule)
            audit(session, actor, "schedule.pause" if paused else "schedule.resume", name)
        return public(schedule)


def remove_schedule(store: Store, name: str, actor: str) -> None:
    with store.write() as session:
        session.delete(_find(session, name))
        audit(session, actor, "schedule.remove", name)


def schedule_environment(store: Store, name: str) -> str:
    with store.read() as session:
        return _find(session, name).environment


# ------------------------------------------------------------------ coming due


def _take(store: Store, schedule_id: int, due: datetime, now: datetime
          ) -> tuple[Schedule, datetime, int, bool] | None:
    """Claim the schedule's time `due`: move its next time past now, exactly once.

    (schedule, the latest time that came due, how many came due, whether that one is on
    time), or None when another pass took it first."""
    with store.write() as session:
        schedule = session.get(Schedule, schedule_id)
        if schedule is None or schedule.paused or schedule.next_at is None \
                or aware(schedule.next_at) != due:
            return None
        latest, count = due, 1
        for found in times(schedule.cron, schedule.timezone, due):
            if found > now or count >= COUNT_MISSED:
                following = found if found > now else next_time(
                    schedule.cron, schedule.timezone, now)
                break
            latest, count = found, count + 1
        # Compare-and-set on the time read: a second pass (another node) finds it moved.
        moved = session.exec(update(Schedule).where(  # type: ignore[call-overload]
            col(Schedule.id) == schedule_id, col(Schedule.next_at) == schedule.next_at)
            .values(next_at=following, last_at=latest)).rowcount
        if moved != 1:
            return None
        session.expunge(schedule)
        return schedule, latest, count, (now - latest).total_seconds() <= GRACE_S


def _outcome(store: Store, schedule_id: int, outcome: str, run_id: int | None) -> None:
    with store.write() as session:
        schedule = session.get(Schedule, schedule_id)
        if schedule is None:
            return
        schedule.last_outcome = validation.free_text(outcome, 500, one_line=True)
        if run_id is not None:
            schedule.last_run_id = run_id
        session.add(schedule)


def _unfinished(store: Store, name: str) -> int | None:
    with store.read() as session:
        return session.exec(select(Run.id).where(Run.schedule == name,
                                                 col(Run.finished_at).is_(None))
                            .order_by(col(Run.id).desc())).first()


def due(store: Store, now: datetime) -> list[tuple[int, datetime]]:
    with store.read() as session:
        return [(s.id, aware(s.next_at)) for s in session.exec(
            select(Schedule).where(col(Schedule.paused).is_(False),
                                   col(Schedule.next_at).is_not(None),
                                   col(Schedule.next_at) <= now)).all()
                if s.id is not None and s.next_at is not None]


def soonest(store: Store) -> datetime | None:
    with store.read() as session:
        found = session.exec(select(Schedule.next_at).where(
            col(Schedule.paused).is_(False), col(Schedule.next_at).is_not(None))
            .order_by(col(Schedule.next_at))).first()
    return aware(found) if found is not None else None


def _local(value: datetime, zone: str) -> str:
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


class Scheduler:
    """Launches each schedule's runs when their times come (on the leading node; the
    compare-and-set keeps any other from launching the same time)."""

    def __init__(self, store: Store, launcher: Launcher,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.launcher = launcher
        self.now = now
        self.leads: Callable[[], bool] = lambda: True
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A schedule was added, paused or resumed: look again now."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            wait = LOOK_EVERY_S
            try:
                if self.leads():
                    await self.pass_once()
                soonest_at = await asyncio.to_thread(soonest, self.store)
                if soonest_at is not None:
                    wait = min(wait, max((soonest_at - self.now()).total_seconds(), 0.05))
            except Exception:  # one bad pass must not end the schedules for good
                pass_failed(log, "a pass over the schedules failed")
            await woken(self._wake, wait)

    async def pass_once(self) -> list[int]:
        """Launch what has come due; the runs launched."""
        now = self.now()
        launched = []
        for schedule_id, at in await asyncio.to_thread(due, self.store, now):
            taken = await asyncio.to_thread(_take, self.store, schedule_id, at, now)
            if taken is None:
                continue
            run_id = await self._come_due(*taken)
            if run_id is not None:
                launched.append(run_id)
        return launched

    async def _come_due(self, schedule: Schedule, latest: datetime, count: int,
                        on_time: bool) -> int | None:
        assert schedule.id is not None
        when = _local(latest, schedule.timezone)
        cause = f"schedule {schedule.name} ({when})"
        if not on_time:
            missed = f"{count} time{'s' if count > 1 else ''}" if count < COUNT_MISSED \
                else f"{COUNT_MISSED:,} times or more"
            if schedule.missed == "skip":
                await asyncio.to_thread(
                    _outcome, self.store, schedule.id,
                    f"missed {missed} while no server ran, the last at {when}: skipped "
                    "(it skips missed times)", None)
                return None
            cause = (f"schedule {schedule.name}, missed {missed} while no server ran, the "
                     f"last at {when}: run once for them")
        if not schedule.overlap:
            running = await asyncio.to_thread(_unfinished, self.store, schedule.name)
            if running is not None:
                await asyncio.to_thread(
                    _outcome, self.store, schedule.id,
                    f"{when}: not launched, run {running} of this schedule still runs", None)
                return None
        try:
            run_id = await self.launcher(schedule, cause)
        except WorkdeckError as exc:
            log.warning("schedule %s did not launch at %s: %s", schedule.name, when, exc)
            await asyncio.to_thread(_outcome, self.store, schedule.id,
                                    f"{when}: not launched: {exc}", None)
            return None
        await asyncio.to_thread(_outcome, self.store, schedule.id,
                                f"{when}: launched run {run_id}", run_id)
        return run_id
