"""SSH to one worker: where and as whom (Endpoint), one open connection with its check
shell, the host key judged as the key exchange presents it, a TCP connect that says
why it failed, and a command's output read within bounds. The pool that keeps one
connection per worker is backend/transport/connections.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from backend.health.checkshell import OUTPUT_LIMIT, CheckShell
from backend.transport.hostkeys import (
    HostKeyDecision,
    same_key,
)
from wire.text import clean_line

# AES-GCM first: asyncssh runs it in OpenSSL, where its chacha20-poly1305 spends part of
# every packet in Python; on a fleet sweep that is most of the client's CPU. The rest
# of asyncssh's default list follows, for servers without GCM.
PREFERRED_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                     "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]


def _log_packets_only_when_asked() -> None:
    # asyncssh describes every packet it sends or receives (names, sizes, notes) before
    # its logger looks at the debug level, which is below packet level unless someone
    # raised it: a twentieth of the server's time in a sweep of open connections went
    # there. Described only when they will be logged.
    from asyncssh.logging import SSHLogger
    from asyncssh.packet import SSHPacketLogger

    describe = getattr(SSHPacketLogger, "_log_packet", None)
    if describe is None or not hasattr(SSHLogger, "_debug_level"):
        return  # another asyncssh: left as it is

    def _log_packet(self: SSHPacketLogger, *args: object) -> None:
        if SSHLogger._debug_level >= 3:
            describe(self, *args)  # type: ignore[arg-type]

    SSHPacketLogger._log_packet = _log_packet  # type: ignore[method-assign]


_log_packets_only_when_asked()


class SSHFailure(Exception):
    """A worker could not be reached or used; `str()` is one sentence for the operator."""

    def __init__(self, reason: str, *, presented_host_key: str | None = None,
                 accepted_key: str | None = None) -> None:
        # Often holds what the worker said (a disconnect reason, a banner): made inert.
        super().__init__(clean_line(reason, 500))
        self.presented_host_key = presented_host_key
        self.accepted_key = accepted_key


class HostKeyRefused(SSHFailure):
    def __init__(self, reason: str, *, presented_host_key: str | None, changed: bool) -> None:
        super().__init__(reason, presented_host_key=presented_host_key)
        self.changed = changed


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to log in; a change of any of these means a new connection."""

    host: str
    port: int = 22
    user: str | None = None
    key_path: str | None = None
    use_agent: bool = False
    pinned_key: str | None = None
    trust_host_key: bool = False

    @property
    def login(self) -> tuple[object, ...]:
        """What the connection itself depends on (trust settings aside)."""
        return (self.host, self.port, self.user, self.key_path, self.use_agent)


@dataclass
class CommandResult:
    exit_status: int | None  # None: the session ended without an exit status
    stdout: bytes
    stderr: bytes
    elapsed_ms: float
    connect_ms: float | None = None  # set when this command opened a new connection
    accepted_key: str | None = None  # set when a new key was accepted (known_hosts, first use)
    accepted_from: str | None = None
    truncated: bool = False


@dataclass
class Connection:
    endpoint: Endpoint
    conn: asyncssh.SSHClientConnection
    server_key: str | None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    shell: CheckShell | None = None

    async def run_script(self, script: str, definitions: str = "") -> CommandResult:
        if self.shell is None or self.shell.dead:
            self.shell = await CheckShell.open(self.conn)
        status, stdout, stderr, truncated = await self.shell.run(script, definitions)
        return CommandResult(status, stdout, stderr, 0.0, truncated=truncated)

    def close_shell(self) -> None:
        if self.shell is not None:
            self.shell.close()
            self.shell = None

    def serves(self, endpoint: Endpoint) -> bool:
        """Reusable for `endpoint`: same login, and the key it verified is still the pin."""
        if self.closed.is_set() or self.endpoint.login != endpoint.login:
            return False
        if endpoint.pinned_key is None:
            return self.endpoint.pinned_key is None
        return self.server_key is not None and same_key(self.server_key, endpoint.pinned_key)


class KeyCheckingClient(asyncssh.SSHClient):
    def __init__(self, decision: HostKeyDecision, closed: asyncio.Event) -> None:
        self._decision = decision
        self._closed = closed

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        return self._decision.judge(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()


def default_identities() -> list[str]:
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    names = ("id_ed25519", "id_ecdsa", "id_rsa")
    return [str(ssh_dir / n) for n in names if (ssh_dir / n).is_file()]


def no_certificate(where: str) -> HostKeyRefused:
    # Only certificates were asked for (the host has a @cert-authority), and the host had
    # none to offer: it drops the connection during the key exchange.
    return HostKeyRefused(f"host key not trusted: known_hosts has a @cert-authority for "
                          f"{where}, and the host presented no certificate signed by it",
                          presented_host_key=None, changed=False)


async def tcp_connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket to the worker, or SSHFailure saying why not."""
    loop = asyncio.get_running_loop()
    where = f"{host}:{port}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    try:
        async with asyncio.timeout(timeout):
            if address is not None:
                targets = [(socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                            (host, port))]
            else:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                targets = [(family, sockaddr) for family, _t, _p, _c, sockaddr in infos]
            last: OSError | None = None
            for family, sockaddr in targets:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, sockaddr)
                except OSError as exc:
                    sock.close()
                    last = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
            raise last or OSError(f"no address for {host}")
    except TimeoutError:
        raise SSHFailure(f"timed out connecting to {where} (no answer within "
                         f"{timeout:g}s)") from None
    except socket.gaierror:
        raise SSHFailure(f"cannot resolve the host name {host!r}") from None
    except ConnectionRefusedError:
        raise SSHFailure(f"connection refused by {where}: no SSH server is listening") from None
    except OSError as exc:
        raise SSHFailure(f"cannot connect to {where}: {exc.strerror or exc}") from None


async def exec_command(conn: asyncssh.SSHClientConnection, command: str,
                stdin: bytes | None) -> CommandResult:
    process = await conn.create_process(command, encoding=None)
    try:
        if stdin is not None:
            process.stdin.write(stdin)
        process.stdin.write_eof()
        (stdout, cut_out), (stderr, cut_err) = await asyncio.gather(
            read_bounded(process.stdout), read_bounded(process.stderr)
        )
        completed = await process.wait(check=False)
    finally:
        process.close()
    return CommandResult(
        exit_status=completed.exit_status if completed.exit_signal is None else None,
        stdout=stdout,
        stderr=stderr,
        elapsed_ms=0.0,
        truncated=cut_out or cut_err,
    )


async def read_bounded(stream: asyncssh.SSHReader) -> tuple[bytes, bool]:
    """Read a stream to its end, keeping at most OUTPUT_LIMIT bytes of it."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return b"".join(chunks), truncated
        if size < OUTPUT_LIMIT:
            chunks.append(chunk[: OUTPUT_LIMIT - size])
            truncated = truncated or size + len(chunk) > OUTPUT_LIMIT
            size += len(chunk)
        else:
            truncated = True


def local_user() -> str:
    import getpass

    return getpass.getuser()
