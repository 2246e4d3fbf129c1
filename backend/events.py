"""Live changes pushed to every connected client, coalesced per object.

Each subscriber keeps only the latest pending event per key (say, per worker): a
client that reads slowly receives the current state of what changed, never a
backlog, and the server's memory per subscriber is bounded by the fleet's size.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def woken(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for `event` at most `timeout` seconds; whether it was set.

    asyncio.timeout, not asyncio.wait_for: Python 3.11's wait_for can swallow a
    cancellation that arrives just as the wait ends, and a loop cancelled at a server's
    stop then ran on, and the stop never ended (seen once in a few hundred stops).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


class Subscription:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._ready = asyncio.Event()

    def _offer(self, key: tuple[str, str], event: dict[str, Any]) -> None:
        # Re-inserting moves the key to the end, so events keep the order of their
        # latest change.
        self._pending.pop(key, None)
        self._pending[key] = event
        self._ready.set()

    async def next_batch(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Wait for changes and take them all; an empty list after `timeout` seconds."""
        if not self._pending:
            self._ready.clear()
            if not await woken(self._ready, timeout):
                return []
        batch = list(self._pending.values())
        self._pending = {}
        return batch

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, retain: tuple[str, ...] = ()) -> None:
        self._subscribers: set[Subscription] = set()
        # The latest data of each object of these topics: the current state, kept so a
        # new subscriber's snapshot is a copy from memory rather than a read of the store.
        self.latest: dict[str, dict[str, dict[str, Any]]] = {topic: {} for topic in retain}
        self.seeded: set[str] = set()

    def seed(self, topic: str, objects: dict[str, dict[str, Any]]) -> None:
        """The whole current state of a retained topic (read once from the store)."""
        self.latest[topic] = dict(objects)
        self.seeded.add(topic)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        """Publish `kind` (e.g. "worker", "worker.removed") about object `key`."""
        topic = kind.split(".", 1)[0]
        event = {"type": kind, "key": key, "data": data}
        retained = self.latest.get(topic)
        if retained is not None:
            if kind.endswith(".removed"):
                retained.pop(key, None)
            elif data is not None:
                retained[key] = data
        for subscription in list(self._subscribers):
            subscription._offer((topic, key), event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
