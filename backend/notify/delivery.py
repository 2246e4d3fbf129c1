"""Telling notifications of events, without slowing anything that tells.

A part that sees something happen (a run's end, a run waiting, a worker unavailable, a
pool short of healthy workers) calls Notifier.tell, which only appends to a queue. The
notifier's own task turns each event into a body and stores one delivery per
notification that wants it; the leading node posts the due deliveries, several at once,
each with its own time limit, so a receiver that is slow or down delays only its own.
A delivery is retried with growing waits for an hour, and every attempt's answer is
kept (`notify list|show`). Bodies are signed with HMAC-SHA256 when the notification has
a secret: `X-Workdeck-Signature: sha256=HEX` over the exact bytes posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, func, select, update

from backend import __version__
from backend.errors import NotFound
from backend.events import woken
from backend.fleet.usage import short
from backend.fleet.validation import free_text
from backend.notify import messages
from backend.notify.targets import Target, delivery_public, targets
from backend.runs.vault import Vault
from backend.store.db import Store, pass_failed
from backend.store.models import Delivery, aware, utcnow

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0  # one attempt: connecting, sending and the receiver's answer
RETRY_S = (2, 10, 30, 60, 120, 300, 600, 900)  # then every 15 minutes
GIVE_UP_S = 3600.0  # retried for an hour, then failed for good
AT_ONCE = 16  # attempts in flight together, to different receivers
LOOK_EVERY_S = 5.0  # due deliveries, at the latest (another node may have stored them)
ANSWERS_AFTER_S = 0.1  # answers that come within this are stored in one write
PASS_GAP_S = 0.05  # passes at most this often
CLAIM_SPARE_S = 30.0  # an attempt's claim outlives its time limit by this


@dataclass(frozen=True)
class Told:
    """Something happened: (kind, what) until the notifier's task reads it."""

    kind: str  # "run", "waiting", "worker", "pools" (whose members changed status)
    key: Any
    data: Any = None


class Notifier:
    def __init__(self, store: Store, vault: Vault, node: Callable[[], str],
                 read_run: Callable[[int], tuple[dict[str, Any], frozenset[str]]],
                 pool_figures: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.store = store
        self.vault = vault
        self.node = node
        self.read_run = read_run
        self.pool_figures = pool_figures
        # Whether each pool was short of healthy workers when last looked at (a pool not
        # looked at yet: unknown, and its first look tells nothing).
        self._short: dict[str, bool] = {}
        self.leads: Callable[[], bool] = lambda: True
        self.stored: Callable[[], None] = lambda: None  # tells the other nodes
        self._told: deque[Told] = deque(maxlen=100_000)
        self._wake = asyncio.Event()
        # The notification each attempt in flight is for: one at a time to a receiver, so
        # that one slow or down delays only its own deliveries.
        self._in_flight: dict[int, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limit = asyncio.Semaphore(AT_ONCE)
        self._targets: list[Target] | None = None
        # Attempts' answers, stored together a moment after they come (one write for
        # the answers of many receivers).
        self._answers: list[tuple[int, bool, str]] = []
        self._unstored: set[int] = set()  # answered deliveries whose answer waits
        self._storing: asyncio.Task[None] | None = None
        self._client: Any = None

    # -------------------------------------------------------------- told (on the loop)

    def tell(self, told: Told) -> None:
        """Something happened: constant time, whatever the receivers are doing."""
        self._told.append(told)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -------------------------------------------------------------- its task

    async def run_forever(self) -> None:
        try:
            while True:
                self._wake.clear()
                wait = LOOK_EVERY_S
                try:
                    await self._store_told()
                    if self.leads():
                        wait = min(wait, await self._deliver_due())
                except Exception:  # one bad pass must not end the notifications
                    pass_failed(log, "a pass over the notifications failed")
                await woken(self._wake, max(wait, 0.05))
                # What comes together is handled together: a run's end and its receivers'
                # answers make one pass, not one each, beside the runs going on.
                await asyncio.sleep(PASS_GAP_S)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.aclose()

    def changed(self) -> None:
        """Notifications were added or removed: read them again."""
        self._targets = None
        self._wake.set()

    def _wanted(self) -> list[Target]:
        """Every notification, its URL and secret opened (kept until one changes)."""
        found = self._targets
        if found is None:
            found = self._targets = targets(self.store, self.vault)
        return found

    async def _store_told(self) -> None:
        if not self._told:
            return
        told = list(self._told)
        self._told.clear()
        looked_at = {pool for item in told if item.kind == "pools" for pool in item.key}
        events = [item for item in told if item.kind != "pools"]
        # Reading what happened and storing its deliveries: one trip to a thread, one
        # transaction, however many events came together (a run's end must not wait for
        # the notifications of the one before it).
        made = await asyncio.to_thread(self._store_events, events) if events else 0
        if looked_at:
            made += await self._short_pools(looked_at, await asyncio.to_thread(self._wanted))
        if made:
            self.stored()

    def _store_events(self, events: list[Told]) -> int:
        wanted = self._wanted()
        if not wanted:
            return 0
        rows = []
        for told in events:
            for event, subject, environment, pools, body in self._events(told):
                rows += [Delivery(notification_id=target.id, event=event, subject=subject,
                                  body=messages.encoded(body, target.format).decode())
                         for target in wanted if target.wants(event, environment, pools)]
        if rows:
            self._insert(rows)
        return len(rows)

    async def _short_pools(self, looked_at: set[str], wanted: list[Target]) -> int:
        """Pools that fell short of healthy workers since last looked at: told. Read
        once a pass, however many of their members changed (a whole rack going down)."""
        figures = await asyncio.to_thread(self.pool_figures)
        rows: list[Delivery] = []
        for name in sorted(looked_at & set(figures)):
            figure = figures[name]
            now, before = short(figure), self._short.get(name)
            self._short[name] = now
            if now and before is False:
                body = messages.pool_body(name, figure, self.node())
                rows += [Delivery(notification_id=target.id, event="pool-short",
                                  subject=f"pool {name}",
                                  body=messages.encoded(body, target.format).decode())
                         for target in wanted
                         if target.wants("pool-short", None, frozenset([name]))]
        if rows:
            await asyncio.to_thread(self._insert, rows)
        return len(rows)

    def _insert(self, rows: list[Delivery]) -> None:
        with self.store.write() as session:
            session.add_all(rows)

    def _events(self, told: Told) -> list[tuple[str, str, str | None,
                                                frozenset[str] | None, dict[str, Any]]]:
        """(event, subject, environment, pools, body) for what was told (in a thread)."""
        node = self.node()
        if told.kind in ("run", "waiting"):
            run, pools = self.read_run(told.key)
            if told.kind == "waiting":
                if not run["waiting"]:
                    return []  # answered before this was read
                event = "run-waiting"
            elif run["status"] in ("failed", "interrupted"):
                event = "run-failed"
            elif run["status"] == "succeeded":
                event = "run-succeeded"
            else:
                return []  # cancelled: whoever cancelled it knows
            return [(event, f"run {run['id']}", run["environment"], pools,
                     messages.run_body(event, run, node))]
        if told.kind == "worker":
            worker = told.data
            return [("worker-unavailable", f"worker {worker['name']}", None,
                     frozenset(worker.get("pools") or []), messages.worker_body(worker, node))]
        return []

    # -------------------------------------------------------------- delivering

    async def _deliver_due(self) -> float:
        """Start the due deliveries; seconds until the next one is due."""
        now = utcnow()
        due, soonest = await asyncio.to_thread(self._due, now,
                                               frozenset(self._in_flight.values()),
                                               frozenset(self._unstored))
        wanted = {target.id: target for target in await asyncio.to_thread(
            self._wanted)} if due else {}
        busy = set(self._in_flight.values())
        chosen = []
        for delivery in due:
            target = wanted.get(delivery.notification_id)
            if target is None or target.id in busy:
                continue
            busy.add(target.id)
            chosen.append((target, delivery))
        claimed = await asyncio.to_thread(self._claim, [d for _t, d in chosen]) \
            if chosen else set()
        for target, delivery in chosen:
            if delivery.id not in claimed:
                continue  # another node (a leader a moment ago) has it
            self._in_flight[delivery.id or 0] = target.id
            task = asyncio.get_running_loop().create_task(self._attempt(target, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return (soonest - now).total_seconds() if soonest is not None else LOOK_EVERY_S

    def _claim(self, deliveries: list[Delivery]) -> set[int]:
        """Take each delivery for this node's attempt, compare-and-set on its next time:
        of two nodes that both lead for a moment, one posts it. A node gone mid-attempt
        leaves it due again once its attempt's time is up."""
        until = utcnow() + timedelta(seconds=TIMEOUT_S + CLAIM_SPARE_S)
        claimed = set()
        with self.store.write() as session:
            for delivery in deliveries:
                moved = session.exec(update(Delivery).where(  # type: ignore[call-overload]
                    col(Delivery.id) == delivery.id, col(Delivery.status) == "pending",
                    col(Delivery.next_at) == delivery.next_at).values(next_at=until)).rowcount
                if moved == 1:
                    claimed.add(delivery.id or 0)
        return claimed

    def _due(self, now: datetime, busy: frozenset[int], answered: frozenset[int]
             ) -> tuple[list[Delivery], datetime | None]:
        """The oldest due delivery of each receiver not busy (leaving out those answered
        already), and when the next is due."""
        with self.store.read() as session:
            oldest = session.exec(select(func.min(Delivery.id)).where(
                Delivery.status == "pending", col(Delivery.next_at) <= now,
                col(Delivery.notification_id).not_in(busy),
                col(Delivery.id).not_in(answered))
                .group_by(Delivery.notification_id)).all()
            due = list(session.exec(select(Delivery).where(col(Delivery.id).in_(oldest))
                                    .order_by(col(Delivery.id))).all()) if oldest else []
            soonest = session.exec(select(Delivery.next_at).where(
                Delivery.status == "pending", col(Delivery.next_at) > now)
                .order_by(col(Delivery.next_at))).first()
        return due, aware(soonest) if soonest is not None else None

    async def _attempt(self, target: Target, delivery: Delivery) -> None:
        try:
            async with self._limit:
                try:
                    delivered, answer = await self._post(target, delivery)
                except Exception as exc:  # kept as its answer: the lane must not stick
                    log.exception("posting delivery %s failed", delivery.id)
                    delivered, answer = False, f"internal error: {exc}"
            # Answered: its receiver may take the next delivery now; this one is not
            # picked again while its answer waits to be stored.
            self._unstored.add(delivery.id or 0)
            self._in_flight.pop(delivery.id or 0, None)
            self._answers.append((delivery.id or 0, delivered, answer))
            self._wake.set()
            if self._storing is None or self._storing.done():
                self._storing = asyncio.get_running_loop().create_task(self._store_answers())
                self._tasks.add(self._storing)
                self._storing.add_done_callback(self._tasks.discard)
        except asyncio.CancelledError:
            self._in_flight.pop(delivery.id or 0, None)
            raise

    async def _store_answers(self) -> None:
        await asyncio.sleep(ANSWERS_AFTER_S)
        answers, self._answers = self._answers, []
        try:
            await asyncio.to_thread(self._record_all, answers)
        except Exception:
            pass_failed(log, "the answers of %d deliveries were not stored", len(answers))
        finally:
            # A delivery whose answer was not stored is sent again: a receiver may get a
            # body twice, never none.
            self._unstored.difference_update(d for d, _delivered, _answer in answers)
            self._wake.set()

    def _record_all(self, answers: list[tuple[int, bool, str]]) -> None:
        with self.store.write() as session:
            for delivery_id, delivered, answer in answers:
                row = session.get(Delivery, delivery_id)
                if row is not None:
                    _answered(row, delivered, answer)
                    session.add(row)

    async def _post(self, target: Target, delivery: Delivery) -> tuple[bool, str]:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT_S),
                                             follow_redirects=False)
        body = delivery.body.encode()
        headers = {"Content-Type": "application/json",
                   "User-Agent": f"Workdeck/{__version__}",
                   "X-Workdeck-Event": delivery.event,
                   "X-Workdeck-Delivery": str(delivery.id)}
        if target.secret:
            digest = hmac.new(target.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Workdeck-Signature"] = f"sha256={digest}"
        started = time.monotonic()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                response = await self._client.post(target.url, content=body,
                                                   headers=headers)
        except TimeoutError:
            return False, f"no answer within {TIMEOUT_S:g} s"
        except httpx.HTTPError as exc:
            return False, free_text(f"{type(exc).__name__}: {exc}", 300, one_line=True)
        took = (time.monotonic() - started) * 1000
        said = f"{response.status_code} {response.reason_phrase}".strip()
        if response.is_success:
            return True, f"{said} in {took:.0f} ms"
        text = free_text(response.text[:200], 200, one_line=True)
        return False, said + (f": {text}" if text else "")

    def _record(self, delivery_id: int, delivered: bool, answer: str,
                final: bool = False) -> dict[str, Any]:
        with self.store.write() as session:
            row = session.get(Delivery, delivery_id)
            if row is None:
                raise NotFound(f"No delivery has the id {delivery_id}.")
            _answered(row, delivered, answer, final)
            session.add(row)
            return delivery_public(row)

    # -------------------------------------------------------------- a test, now

    async def test(self, name: str, who: str) -> dict[str, Any]:
        """Post a test event to one notification now; its answer, recorded."""
        found = await asyncio.to_thread(targets, self.store, self.vault, name)
        if not found:
            raise NotFound(f"No notification is named {name!r}.")
        target = found[0]
        body = messages.encoded(messages.test_body(name, self.node(), who), target.format)
        row = Delivery(notification_id=target.id, event="test", subject=f"a test by {who}",
                       body=body.decode())

        def insert() -> Delivery:
            with self.store.write() as session:
                session.add(row)
                session.flush()
                session.expunge(row)
                return row

        stored = await asyncio.to_thread(insert)
        delivered, answer = await self._post(target, stored)
        # A test is not retried: its answer is what was asked for.
        return await asyncio.to_thread(self._record, stored.id or 0, delivered, answer,
                                       True)


def _answered(row: Delivery, delivered: bool, answer: str, final: bool = False) -> None:
    """An attempt's answer on its delivery: delivered, or tried again later, or (after
    an hour, or for a test) failed for good."""
    row.attempts += 1
    row.answer = answer
    now = utcnow()
    if delivered:
        row.status, row.delivered_at = "delivered", now
    elif final or (now - aware(row.created_at)).total_seconds() >= GIVE_UP_S:
        row.status = "failed"
    else:
        wait = RETRY_S[min(row.attempts - 1, len(RETRY_S) - 1)]
        row.next_at = now + timedelta(seconds=wait)
