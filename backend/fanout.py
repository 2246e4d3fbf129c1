"""What one node changes, told to the others, so that every console sees everything
whichever node it is connected to.

On PostgreSQL, a node says what changed (a run, a run's log, workers' health, a route's
change) on the channel `workdeck` with NOTIFY, and hears the others with LISTEN. A
message is only a wake-up naming what changed: the node that hears it reads the store,
which stays the truth. A message can be lost (a connection that drops, a node that
restarts): every node also catches up now and then (CATCH_UP_S), so a lost message
delays an update but never loses it. What a node says within SEND_EVERY_S goes as one
message. With SQLite there is one server and nothing to tell.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from backend.store.db import Store

log = logging.getLogger(__name__)

CHANNEL = "workdeck"
SEND_EVERY_S = 0.05
CATCH_UP_S = 5.0
RECONNECT_S = 1.0
MAX_PAYLOAD = 7000  # PostgreSQL takes up to 8000 bytes
MAX_KEYS = 200  # more keys of one kind than this are sent as "all of them" ("*")

Handler = Callable[[set[str]], Awaitable[Any]]


class Fanout:
    def __init__(self, store: Store, node: str, *, enabled: bool | None = None) -> None:
        self.store = store
        self.node = node
        self.enabled = store.dialect == "postgresql" if enabled is None else enabled
        # What to do on hearing of a kind of change (keys: which ones; "*": any).
        self.handlers: dict[str, Handler] = {}
        # Called every CATCH_UP_S, and after the listening connection came back.
        self.catch_up: Callable[[], Awaitable[Any]] | None = None
        self.heard = 0  # messages heard from other nodes
        self._outbox: dict[str, set[str]] = {}
        self._wake = asyncio.Event()
        self._listening = asyncio.Event()

    def tell(self, kind: str, keys: Iterable[object] = ("*",)) -> None:
        """Tell the other nodes that things of `kind` changed (`keys`: which ones)."""
        if not self.enabled:
            return
        wanted = self._outbox.setdefault(kind, set())
        if "*" not in wanted:
            wanted.update(str(key) for key in keys)
            if len(wanted) > MAX_KEYS:
                self._outbox[kind] = {"*"}
        self._wake.set()

    async def run_forever(self) -> None:
        if not self.enabled:
            return
        await asyncio.gather(self._send_forever(), self._listen_forever(),
                             self._catch_up_forever())

    async def listening(self, timeout: float) -> bool:
        """Wait until this node hears the others (for a start that must not miss one)."""
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -------------------------------------------------------- telling

    async def _send_forever(self) -> None:
        import psycopg

        connection: psycopg.AsyncConnection[Any] | None = None
        while True:
            await self._wake.wait()
            await asyncio.sleep(SEND_EVERY_S)  # what follows at once goes with it
            self._wake.clear()
            outbox, self._outbox = self._outbox, {}
            try:
                if connection is None or connection.closed:
                    connection = await psycopg.AsyncConnection.connect(
                        self.store.libpq_url(), autocommit=True,
                        application_name=f"workdeck {self.node} fan-out")
                for payload in _payloads(self.node, outbox):
                    await connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except (psycopg.Error, OSError) as exc:
                # Told again with what comes next; the others catch up meanwhile.
                log.warning("could not tell the other nodes what changed: %s", exc)
                for kind, keys in outbox.items():
                    self._outbox.setdefault(kind, set()).update(keys)
                if connection is not None:
                    await connection.close()
                connection = None
                await asyncio.sleep(RECONNECT_S)
                self._wake.set()

    # -------------------------------------------------------- hearing

    async def _listen_forever(self) -> None:
        import psycopg

        missed = False
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self.store.libpq_url(), autocommit=True,
                    application_name=f"workdeck {self.node} fan-in")
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    if missed:  # what was said while this node was not listening
                        await self._caught_up()
                    async for message in connection.notifies():
                        await self._heard(message.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("not hearing the other nodes (%s): trying again", exc)
            self._listening.clear()
            missed = True
            await asyncio.sleep(RECONNECT_S)

    async def _heard(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            sender, kinds = message["from"], message["kinds"]
        except (ValueError, KeyError, TypeError):
            return  # not Workdeck's: the channel is open to anyone on the database
        if sender == self.node or not isinstance(kinds, dict):
            return
        self.heard += 1
        for kind, keys in kinds.items():
            handler = self.handlers.get(kind)
            if handler is None:
                continue
            try:
                await handler(set(map(str, keys)))
            except Exception:  # the catch-up brings it later
                log.exception("acting on node %s's news of %s failed", sender, kind)

    async def _catch_up_forever(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_S)
            await self._caught_up()

    async def _caught_up(self) -> None:
        if self.catch_up is None:
            return
        try:
            await self.catch_up()
        except Exception:
            log.warning("catching up with the other nodes failed; tried again in %g s",
                        CATCH_UP_S, exc_info=True)


def _payloads(node: str, outbox: dict[str, set[str]]) -> list[str]:
    """The outbox as messages of at most MAX_PAYLOAD bytes."""
    payloads: list[str] = []
    kinds: dict[str, list[str]] = {}
    for kind, keys in outbox.items():
        for key in sorted(keys):
            kinds.setdefault(kind, []).append(key)
            if len(json.dumps({"from": node, "kinds": kinds})) > MAX_PAYLOAD:
                kinds[kind].pop()
                payloads.append(json.dumps({"from": node, "kinds": kinds}))
                kinds = {kind: [key]}
    if kinds:
        payloads.append(json.dumps({"from": node, "kinds": kinds}))
    return payloads
