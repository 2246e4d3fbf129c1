"""Who is asking and what they may do.

A request over the Unix socket says nothing about who sends it: the kernel does
(SO_PEERCRED, backend/peer.py). The server's own OS account is always admin; another
account (the socket opened to a group with `server --socket-group`) is the person mapped
to it (`user add --os-user`), or is refused. Over TCP a request carries a token: a
person's (looked up by its SHA-256 in a cache of every token, read again whenever people
or tokens change), or the data directory's own `api-token`, which stands for the
server's account. Failed attempts are
counted per address: past FAILURES_PER_MINUTE a failing request from there is refused
with 429 until the minute has passed (a valid token still gets in).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import hmac
import logging
import os
import pwd
import time
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from backend.errors import Forbidden, Unauthorized, WorkdeckError
from backend.fleet.audit import audit
from backend.people import directory
from backend.store.db import Store
from backend.store.models import utcnow
from wire.roles import PERMISSIONS, SCOPED, permits

log = logging.getLogger(__name__)
_PENDING: set[asyncio.Future[None]] = set()  # audit writes under way

FAILURES_PER_MINUTE = 10
TOUCH_EVERY_S = 60.0  # how often tokens' "last used" reach the store

# What each permission is, said in a refusal: "alice (viewer) may not launch runs."
DOING = {"view": "see this", "launch": "launch runs", "decide": "answer decisions on runs",
         "cancel": "cancel runs", "check": "check workers", "drain": "drain workers",
         "approve": "approve manual steps", "admin": "change this (it needs admin)"}


class TooManyFailures(WorkdeckError):
    status_code = 429
    code = "busy"


@dataclass(frozen=True)
class Principal:
    """Someone known to be asking: a person, or the server's own account."""

    name: str
    via: str  # "socket", or the token's label (or number)
    grants: tuple[tuple[str, str], ...]  # (role, environment or "" for every one)
    builtin: bool = False
    address: str = ""  # where a request over TCP came from; the account over the socket
    token_id: int | None = None
    os_user: str = ""  # the OS account a person asks from over the socket

    @property
    def actor(self) -> str:
        """How the audit log and the run records name them: who, how, from where."""
        where = f", {self.address}" if self.address else ""
        return f"{self.name} ({self.via}{where})"

    def permits(self, permission: str, environment: str | None = None) -> bool:
        """May they do it: in `environment`, for what acts on a run; anywhere when no
        environment is given (a route's first look, before it knows the run's)."""
        return self.builtin or permits(self.grants, permission, environment)

    def grants_public(self) -> list[dict[str, Any]]:
        """Their grants as the API shows them: one per role, with the environments it is
        limited to (none: every one)."""
        by_role: dict[str, list[str]] = {}
        for role, where in self.grants:
            by_role.setdefault(role, []).append(where)
        return [{"role": role, "environments": [] if "" in wheres else sorted(wheres)}
                for role, wheres in sorted(by_role.items())]

    def roles(self) -> str:
        if self.builtin:
            return "admin"
        if not self.grants:
            return "no role"
        return ", ".join(g["role"] + (f" on {', '.join(g['environments'])}"
                                      if g["environments"] else "")
                         for g in self.grants_public())

    def public(self) -> dict[str, Any]:
        """Who they are as `GET /api/whoami` and the push stream's snapshot say it."""
        return {"name": self.name, "via": self.via, "grants": self.grants_public(),
                "os_user": self.os_user or None,
                "permissions": [p for p in PERMISSIONS if self.permits(p)]}

    def require(self, permission: str, environment: str | None = None) -> None:
        if not self.permits(permission, environment):
            on = f" on {environment}" if environment and permission in SCOPED else ""
            raise Forbidden(f"{self.name} ({self.roles()}) may not {DOING[permission]}{on}.")


class Access:
    """Tells who is asking, from the store's people and tokens (cached)."""

    def __init__(self, store: Store, shared_token: str | None = None) -> None:
        self.store = store
        self.account = _account()
        self.shared_token = shared_token
        self.uid = os.getuid()
        self._tokens: dict[str, tuple[int, str, str, Any]] | None = None
        self._grants: dict[str, tuple[tuple[str, str], ...]] = {}
        self._accounts: dict[str, str] = {}
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._used: dict[int, datetime] = {}
        self._touched = time.monotonic()
        self.generation = 0  # moves on whenever people, grants or tokens change
        self._socket = Principal(self.account, "socket", (("admin", ""),), builtin=True)

    def invalidate(self) -> None:
        """People, grants or tokens changed: read them again at the next request."""
        self._tokens = None
        self.generation += 1

    def server(self, via: str = "socket", address: str = "") -> Principal:
        if via == "socket" and not address:
            return self._socket  # every local request: made once
        return Principal(self.account, via, (("admin", ""),), builtin=True, address=address)

    async def acting(self, name: str, via: str) -> Principal:
        """Someone acting without asking (a schedule launching as the person who made it):
        with the grants they hold now; the server's own account is admin."""
        if name == self.account:
            return self.server(via)
        await self._loaded()
        return Principal(name, via, self._grants.get(name, ()))

    def _load(self) -> None:
        # A change that lands while this reads makes what it read stale: it is then not
        # kept (a revoked token must never come back from a read begun before).
        generation = self.generation
        read = directory.credentials(self.store)
        if generation == self.generation:
            self._tokens, self._grants, self._accounts = read.tokens, read.grants, read.accounts

    async def _loaded(self) -> dict[str, tuple[int, str, str, Any]]:
        while self._tokens is None:
            await asyncio.to_thread(self._load)
        return self._tokens

    async def local(self, uid: int | None) -> Principal:
        """Who connects over the Unix socket, from the account the kernel names: the
        server's own (admin), or the person mapped to it. Anyone else is refused."""
        if uid is None or uid == self.uid:
            return self._socket
        account = _account_name(uid)
        await self._loaded()
        person = self._accounts.get(account)
        if person is None:
            log.warning("refused a request over the socket from the account %s", account)
            raise Forbidden(f"The account {account} (uid {uid}) is no one in Workdeck: an "
                            f"admin maps it to a person with `workdeck user add NAME "
                            f"--os-user {account}`.")
        return Principal(person, "socket", self._grants.get(person, ()),
                         address=f"account {account}", os_user=account)

    async def authenticate(self, authorization: str, address: str) -> Principal:
        """The person a TCP request's `Authorization: Bearer TOKEN` names, or a refusal
        (401; 429 when the address failed too often in the last minute)."""
        now = time.monotonic()
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            if self.shared_token and hmac.compare_digest(token.encode(),
                                                         self.shared_token.encode()):
                return self.server("api-token", address)
            found = (await self._loaded()).get(directory.digest(token))
            if found is not None:
                token_id, owner, label, expires = found
                if expires is not None and expires.replace(tzinfo=UTC) <= utcnow():
                    self._failed(address, now, f"an expired token of {owner}")
                    raise Unauthorized(f"This token of {owner} expired on "
                                       f"{expires:%Y-%m-%d %H:%M} UTC: create another with "
                                       "`workdeck token create`.")
                self._used[token_id] = utcnow()
                await self._touch(now)
                return Principal(owner, label or f"token {token_id}",
                                 self._grants.get(owner, ()), address=address,
                                 token_id=token_id)
        self._failed(address, now, "no token" if not token else "an unknown token")
        raise Unauthorized("A valid token is required: `workdeck token create` makes one, "
                           "`workdeck login` keeps it (or set WORKDECK_TOKEN).")

    async def still(self, principal: Principal, permission: str) -> bool:
        """For a stream that stays open: may its principal still do `permission`, with
        the grants they hold now? False once their token is revoked or they are removed."""
        if principal.builtin:
            return True
        tokens = await self._loaded()
        if principal.token_id is None:
            if self._accounts.get(principal.os_user) != principal.name:
                return False  # removed, or no longer that account
        elif not any(token_id == principal.token_id for token_id, *_ in tokens.values()):
            return False
        return replace(principal, grants=self._grants.get(principal.name, ())).permits(
            permission)

    def _failed(self, address: str, now: float, what: str) -> None:
        """Count a failure; past the limit, refuse with 429 (and no more audit writes).
        Only failures are slowed: a valid token from the same address (an office behind
        one NAT) still gets in."""
        failures = self._failures[address]
        while failures and now - failures[0] > 60:
            failures.popleft()
        if len(failures) >= FAILURES_PER_MINUTE:
            raise TooManyFailures(f"Too many failed attempts from {address}: wait a minute.")
        failures.append(now)
        if len(self._failures) > 10_000:  # addresses that stopped trying
            for stale in [a for a, f in self._failures.items() if not f][:5_000]:
                del self._failures[stale]
        log.warning("refused a request from %s with %s", address, what)
        # Audited up to the limit, then once for the block: a flood costs the store at most
        # FAILURES_PER_MINUTE + 1 writes a minute per address.
        detail = (f"refused: {what}" if len(failures) < FAILURES_PER_MINUTE else
                  f"refused: {what}; {FAILURES_PER_MINUTE} failures in a minute: refused "
                  "for the rest of it")
        task = asyncio.ensure_future(asyncio.to_thread(self._audit, address, detail))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    def _audit(self, address: str, detail: str) -> None:
        # A busy store must not turn a 401 into a 500.
        with contextlib.suppress(Exception), self.store.write() as session:
            audit(session, address, "auth.fail", address, detail)

    async def _touch(self, now: float) -> None:
        if now - self._touched < TOUCH_EVERY_S or not self._used:
            return
        self._touched = now
        used, self._used = self._used, {}
        with contextlib.suppress(Exception):  # a busy store only delays "last used"
            await asyncio.to_thread(directory.touch_tokens, self.store, used)


@functools.lru_cache(maxsize=1024)
def _account_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)  # an account with no name (a container's uid, say)


def _account() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "server"
