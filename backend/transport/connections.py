"""SSH connections to the fleet: one persistent connection per worker, reused by every
command.

Connections are opened lazily, shared by concurrent callers, kept alive with SSH
keepalives and replaced when they drop. Host keys fail closed: a key that is not
pinned (or in the server account's known_hosts) is refused, and what it was is
reported so an operator can decide to trust it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable

import asyncssh

from backend.health.checkshell import ShellGone
from backend.transport.hostkeys import (
    HostKeyDecision,
    KnownHosts,
    export_key,
    fingerprint_of,
    same_key,
)
from backend.transport.ssh import (
    PREFERRED_CIPHERS,
    CommandResult,
    Connection,
    Endpoint,
    HostKeyRefused,
    KeyCheckingClient,
    SSHFailure,
    default_identities,
    exec_command,
    local_user,
    no_certificate,
    tcp_connect,
)

CLOSE_WAIT_S = 3.0  # how long a stopping server waits for its SSH connections to close


class ConnectionPool:
    """Persistent SSH connections keyed by worker, with bounded connection storms."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10,
        login_timeout: float = 10,
        keepalive_interval: float = 5,
        keepalive_count_max: int = 3,
        max_connecting: int = 64,
        known_hosts: KnownHosts | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.login_timeout = login_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = keepalive_count_max
        self.known_hosts = known_hosts or KnownHosts()
        self._connecting = asyncio.Semaphore(max_connecting)
        self._connections: dict[object, Connection] = {}
        self._locks: dict[object, asyncio.Lock] = {}
        self._keys: dict[str, tuple[float, asyncssh.SSHKey]] = {}

    def __len__(self) -> int:
        return sum(1 for c in self._connections.values() if not c.closed.is_set())

    def _client_keys(self, endpoint: Endpoint) -> list[asyncssh.SSHKey]:
        paths = [endpoint.key_path] if endpoint.key_path else default_identities()
        keys = []
        for path in paths:
            try:
                stamp = os.stat(path).st_mtime
                cached = self._keys.get(path)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, asyncssh.read_private_key(path))
                    self._keys[path] = cached
                keys.append(cached[1])
            except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                if endpoint.key_path:
                    raise SSHFailure(f"cannot load the key file {path}: {exc}") from None
        return keys

    async def _open(self, endpoint: Endpoint) -> tuple[Connection, float, HostKeyDecision]:
        decision = HostKeyDecision(pinned=endpoint.pinned_key,
                                   trust_host_key=endpoint.trust_host_key)
        known, authorities, revoked = self.known_hosts.match(endpoint.host, endpoint.port)
        if endpoint.pinned_key is None:
            decision.known_hosts = [export_key(k) for k in known]
            # A host vouched for by a certificate authority is trusted through it alone.
            decision.certified_only = bool(authorities)
        else:
            authorities = []  # a pinned key is the only key accepted
        trusted = [asyncssh.import_public_key(k) for k in
                   ([endpoint.pinned_key] if endpoint.pinned_key else decision.known_hosts)]
        closed = asyncio.Event()
        where = f"{endpoint.host}:{endpoint.port}"
        started = time.perf_counter()
        client_keys = self._client_keys(endpoint)
        if not client_keys and not endpoint.use_agent:
            raise SSHFailure(
                "no SSH key to log in with: give the worker a key file (--key) or allow "
                "ssh-agent (--agent)"
            )
        # The TCP connection first, on its own: a host that refuses or does not answer
        # (a fleet in an outage) then costs a socket, not SSH's whole option set-up.
        sock = await tcp_connect(endpoint.host, endpoint.port, self.connect_timeout)
        try:
            conn = await asyncssh.connect(
                endpoint.host,
                endpoint.port,
                sock=sock,
                username=endpoint.user or local_user(),
                client_keys=client_keys or None,
                agent_path=() if endpoint.use_agent else None,
                agent_forwarding=False,
                password=None,
                kbdint_auth=False,
                known_hosts=lambda _h, _a, _p: (trusted, authorities, revoked),
                client_factory=lambda: KeyCheckingClient(decision, closed),
                connect_timeout=self.connect_timeout,
                login_timeout=self.login_timeout,
                keepalive_interval=self.keepalive_interval,
                keepalive_count_max=self.keepalive_count_max,
                encryption_algs=PREFERRED_CIPHERS,
                config=None,
                x509_trusted_certs=None,
                gss_host=None,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            sock.close()
            raise self._host_key_failure(endpoint, decision, exc.reason) from None
        except asyncssh.PermissionDenied:
            sock.close()
            raise SSHFailure(
                f"login refused: {where} did not accept the key for user "
                f"{endpoint.user or local_user()!r}"
            ) from None
        except (asyncssh.KeyExchangeFailed, asyncssh.DisconnectError) as exc:
            sock.close()
            if decision.certified_only and decision.presented is None:
                raise no_certificate(where) from None
            if isinstance(exc, asyncssh.DisconnectError) and not isinstance(
                    exc, asyncssh.KeyExchangeFailed):
                raise SSHFailure(f"{where} closed the SSH connection: {exc.reason}") from None
            if endpoint.pinned_key:
                raise HostKeyRefused(
                    f"{where} no longer offers the pinned host key type "
                    f"({endpoint.pinned_key.split()[0]}): its host key may have changed, "
                    "possibly a man-in-the-middle; connection refused",
                    presented_host_key=None,
                    changed=True,
                ) from None
            raise SSHFailure(f"SSH key exchange with {where} failed: {exc.reason}") from None
        except TimeoutError:
            sock.close()
            raise SSHFailure(
                f"timed out connecting or logging in to {where} "
                f"(no SSH answer within {self.login_timeout:g}s)"
            ) from None
        except OSError as exc:
            sock.close()
            if decision.certified_only and decision.presented is None:
                raise no_certificate(where) from None
            raise SSHFailure(f"cannot connect to {where}: {exc.strerror or exc}") from None
        except asyncssh.Error as exc:
            sock.close()
            raise SSHFailure(f"SSH to {where} failed: {exc.reason}") from None
        except BaseException:
            sock.close()
            raise
        connect_ms = (time.perf_counter() - started) * 1000
        server_key = conn.get_server_host_key()
        exported = export_key(server_key) if server_key else None
        if endpoint.pinned_key is None and decision.accepted_from is None and exported:
            # asyncssh accepted the key without asking us: it was one of the known_hosts
            # keys, or a certificate signed by a known_hosts @cert-authority.
            decision.presented = exported
            decision.accepted_from = "known_hosts" if any(
                same_key(exported, k) for k in decision.known_hosts) else "cert-authority"
        return Connection(endpoint, conn, exported, closed), connect_ms, decision

    def _host_key_failure(self, endpoint: Endpoint, decision: HostKeyDecision,
                          said: str = "") -> HostKeyRefused:
        presented = fingerprint_of(decision.presented) if decision.presented else "an unknown key"
        if "revoked" in said.lower():
            what = "certificate authority" if "CA key" in said else "host key"
            return HostKeyRefused(
                f"HOST KEY REVOKED: the {what} {endpoint.host}:{endpoint.port} presented is "
                "marked @revoked in known_hosts; connection refused",
                presented_host_key=None, changed=True)
        if decision.presented is None and said:
            # Refused before our own check: a host certificate that did not validate.
            return HostKeyRefused(
                f"host certificate refused: {said}; connection refused",
                presented_host_key=None, changed=False)
        if decision.certified_only and not decision.changed:
            return HostKeyRefused(
                f"host key not trusted: presented {presented}, but known_hosts has a "
                "@cert-authority for this host and the key is not a certificate it signed",
                presented_host_key=None, changed=False)
        if decision.changed:
            expected = fingerprint_of(endpoint.pinned_key or decision.known_hosts[0])
            source = "pinned" if endpoint.pinned_key else "in known_hosts"
            return HostKeyRefused(
                f"HOST KEY CHANGED: presented {presented} but {expected} is {source}; "
                "this may be a man-in-the-middle attack, connection refused",
                presented_host_key=decision.presented,
                changed=True,
            )
        return HostKeyRefused(
            f"host key not trusted: presented {presented}; trust it after verifying it",
            presented_host_key=decision.presented,
            changed=False,
        )

    async def _connection(self, key: object, endpoint: Endpoint
                          ) -> tuple[Connection, float | None, HostKeyDecision | None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._connections.get(key)
            if current and current.serves(endpoint):
                return current, None, None
            if current:
                self._connections.pop(key, None)
                current.conn.close()
            fresh, connect_ms, decision = await self._open(endpoint)
            self._connections[key] = fresh
            return fresh, connect_ms, decision

    async def run(self, key: object, endpoint: Endpoint, command: str, *,
                  timeout: float, stdin: bytes | None = None) -> CommandResult:
        """Run `command` in a session of its own; raise SSHFailure saying why it cannot."""
        return await self._bounded(key, endpoint, timeout,
                                   lambda c: exec_command(c.conn, command, stdin))

    async def connection(self, key: object, endpoint: Endpoint, *, timeout: float
                         ) -> asyncssh.SSHClientConnection:
        """The worker's open connection (connecting if needed), for a session of one's own."""
        async def opened(connection: Connection) -> CommandResult:
            found.append(connection.conn)
            return CommandResult(0, b"", b"", 0.0)

        found: list[asyncssh.SSHClientConnection] = []
        await self._bounded(key, endpoint, timeout, opened)
        return found[0]

    async def run_script(self, key: object, endpoint: Endpoint, script: str, *,
                         timeout: float, definitions: str = "") -> CommandResult:
        """Run a sh script in the worker's check shell (see health/checkshell.py), the functions
        it calls in `definitions`."""
        return await self._bounded(key, endpoint, timeout,
                                   lambda c: c.run_script(script, definitions),
                                   on_timeout=Connection.close_shell)

    async def _bounded(self, key: object, endpoint: Endpoint, timeout: float,
                       action: Callable[[Connection], Awaitable[CommandResult]],
                       on_timeout: Callable[[Connection], None] | None = None
                       ) -> CommandResult:
        # The timeout is the worker's time: waiting here for one of the bounded handshake
        # slots (a cold start of a large fleet) does not count against it.
        current = self._connections.get(key)
        slot = None if current and current.serves(endpoint) else self._connecting
        if slot is not None:
            await slot.acquire()
        try:
            async with asyncio.timeout(timeout):
                return await self._attempt(key, endpoint, action)
        except TimeoutError:
            current = self._connections.get(key)
            if on_timeout is not None and current is not None:
                on_timeout(current)  # its state is unknown after a timeout: start afresh
            raise SSHFailure(f"timed out after {timeout:g}s") from None
        finally:
            if slot is not None:
                slot.release()

    async def _attempt(self, key: object, endpoint: Endpoint,
                       action: Callable[[Connection], Awaitable[CommandResult]]
                       ) -> CommandResult:
        for attempt in (1, 2):
            connection, connect_ms, decision = await self._connection(key, endpoint)
            started = time.perf_counter()
            try:
                result = await action(connection)
            except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, BrokenPipeError,
                    ShellGone) as exc:
                # A connection that dropped since its last use: reconnect once.
                connection.closed.set()
                connection.close_shell()
                if attempt == 2 or connect_ms is not None:
                    raise SSHFailure(f"the SSH connection was lost: {exc}") from None
                continue
            result.elapsed_ms = (time.perf_counter() - started) * 1000
            result.connect_ms = connect_ms
            if decision and decision.accepted_from in ("known_hosts", "first use"):
                result.accepted_key = decision.presented
                result.accepted_from = decision.accepted_from
            return result
        raise AssertionError("unreachable")

    async def drop(self, key: object) -> None:
        connection = self._connections.pop(key, None)
        if connection:
            connection.conn.close()
            with contextlib.suppress(Exception):
                await connection.conn.wait_closed()

    async def close(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            connection.conn.close()
        # Bounded: a peer that stopped reading with our data unsent (a frozen worker, a
        # full window) holds a graceful close open, and a stopping server must not wait.
        waits = [asyncio.ensure_future(c.conn.wait_closed()) for c in connections]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=CLOSE_WAIT_S)
            for wait in pending:
                wait.cancel()
            for connection in connections:
                with contextlib.suppress(Exception):
                    connection.conn.abort()
