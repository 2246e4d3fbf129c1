"""The server process: one per data directory, its sockets, its process-wide tuning,
and the backend (backend/core.py) served by the HTTP application (backend/api/app.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import grp
import logging
import os
import secrets
import signal
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from backend import fleet
from backend.api.app import create_app
from backend.certificate import Certificate, CertificateError, server_certificate
from backend.core import Backend
from backend.errors import WorkdeckError
from backend.peer import PeerHTTPProtocol
from backend.store.db import Store, StoreError
from wire.datadir import DataDir
from wire.hosts import loopback
from wire.serverlock import AlreadyRunning, ServerLock

log = logging.getLogger("workdeck.server")

UNIX_PATH_MAX = 107


class ServerError(Exception):
    """The server cannot start; the message says why in one sentence."""


def _bind_unix(path: str) -> socket.socket:
    if len(path) > UNIX_PATH_MAX:
        raise ServerError(
            f"The socket path {path} is longer than {UNIX_PATH_MAX} characters; use a shorter "
            "--data-dir."
        )
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left behind by a server that died
        else:
            raise ServerError(f"A Workdeck server is already running on {path}.")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock


def _bind_tcp(listen: str) -> socket.socket:
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ServerError(f"--listen {listen!r} is not unix:PATH or HOST:PORT.") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # that say so, and with it on, a response's body waited 40 ms behind its headers
    # for the client's delayed acknowledgement.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerError(f"Cannot listen on {listen}: {exc.strerror or exc}.") from None
    return sock


def _api_token(data_dir: DataDir) -> str:
    """WORKDECK_TOKEN if set, else the data directory's token file (made on first use)."""
    token = os.environ.get("WORKDECK_TOKEN")
    if token:
        return token
    path = data_dir.token_file
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def _fewer_malloc_arenas() -> None:
    # glibc gives each thread that allocates its own arena; the store and log threads
    # pass megabytes of log through theirs, and memory freed in one arena is not reused
    # by another. Two arenas keep a flood of output from leaving ~100 MB behind.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX


def _quick_gil_handoff() -> None:
    # The event loop serves every console and request; the store threads do the heavy
    # reads and writes. With the default 5 ms switch interval, each of the loop's wake-ups
    # (a send, a reply) can wait that long per busy thread for the GIL: a 7 MB snapshot
    # to a console took a second to send on a busy server. 1 ms keeps the loop quick.
    sys.setswitchinterval(0.001)


def _remember_user() -> None:
    # getpass.getuser() (asyncssh calls it for every connection) asks the password
    # database each time unless LOGNAME or USER is set; with thousands of workers that
    # lookup was a sixth of the server's time.
    if not any(os.environ.get(k) for k in ("LOGNAME", "USER", "LNAME", "USERNAME")):
        with contextlib.suppress(KeyError, ImportError):
            import pwd

            os.environ["LOGNAME"] = pwd.getpwuid(os.getuid()).pw_name


def _open_to_group(paths: list[str], root: Path, group: str) -> None:
    """Let the members of `group` connect to the sockets at `paths`, and nothing else:
    each socket 0660 with that group, the data directory 0710 (they may pass through it,
    not list it; its files stay 0600). A directory on the way that the group cannot pass
    through is named in a refusal rather than opened: loosening it is the admin's call."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise ServerError(f"There is no group {group!r} on this machine (--socket-group)."
                          ) from None
    for path in paths:
        for folder in reversed(Path(path).parents):
            if folder == root:
                continue
            mode = folder.stat()
            passable = mode.st_mode & stat.S_IXOTH or (
                mode.st_gid == gid and mode.st_mode & stat.S_IXGRP)
            if not passable:
                raise ServerError(
                    f"The group {group} cannot reach {path}: {folder} is closed to it (mode "
                    f"{stat.S_IMODE(mode.st_mode):04o}); choose a --data-dir the group can "
                    "reach, such as one under /srv.")
    _private(root, keep=set(paths))
    try:
        if any(Path(path).parent == root for path in paths):
            os.chown(root, -1, gid)
            os.chmod(root, 0o710)
        for path in paths:
            os.chown(path, -1, gid)
            os.chmod(path, 0o660)
    except PermissionError:
        raise ServerError(f"The server cannot give its socket to the group {group}: its "
                          "account is not a member of it.") from None


def _private(root: Path, keep: set[str]) -> None:
    """Take the group's and others' bits off everything in the data directory (a log a
    client made with its umask, say) but the sockets: the group passes through the
    folder to reach them, and must find nothing else it can open."""
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):  # gone meanwhile: nothing to close
                mode = os.lstat(path)
                if path not in keep and not stat.S_ISLNK(mode.st_mode) and \
                        mode.st_mode & 0o077:
                    os.chmod(path, stat.S_IMODE(mode.st_mode) & 0o700)


def serve(data_dir: DataDir, listen: str | None = None,
          prepare: Callable[[Backend], None] | None = None, *,
          tls_cert: str | None = None, tls_key: str | None = None,
          plain_http: bool = False, socket_group: str | None = None,
          database: str | None = None, node: str | None = None) -> None:
    """Run the server in the foreground until stopped (SIGTERM, SIGINT or the API).

    It always serves the data directory's Unix socket, where local clients look first
    (the server's account only, or the members of `socket_group` too); `listen` may add a
    TCP address for others, served over HTTPS (with the certificate given, or one made
    for this server), or plain HTTP on a loopback address only. Its data is in the
    data directory's SQLite file, or in the PostgreSQL `database` (a URL).
    """
    _fewer_malloc_arenas()
    _quick_gil_handoff()
    _remember_user()
    data_dir.ensure()
    lock = ServerLock(data_dir)
    try:
        lock.acquire()  # before anything else: a second server must change nothing
    except AlreadyRunning as exc:
        raise ServerError(str(exc)) from None
    sockets: list[socket.socket] = []
    tls: Certificate | None = None
    unix_paths: list[str] = []
    bound: list[str] = []  # only these are ours to remove at the end
    try:
        listen = listen or f"unix:{data_dir.socket}"
        addresses = [listen]
        if listen.startswith("unix:"):
            unix_paths.append(listen[len("unix:"):])
        else:
            sockets.append(_bind_tcp(listen))
            host, port = sockets[0].getsockname()[:2]
            if plain_http and not loopback(host):
                raise ServerError(f"Plain HTTP would send tokens in the clear to {host}: "
                                  "serve HTTPS there (leave out --plain-http), or listen on "
                                  "a loopback address.")
            if not plain_http:
                try:
                    tls = server_certificate(data_dir, host, tls_cert, tls_key)
                except CertificateError as exc:
                    raise ServerError(str(exc)) from None
            addresses = [f"{'[' + host + ']' if ':' in host else host}:{port}"]
        if str(data_dir.socket) not in unix_paths:
            unix_paths.append(str(data_dir.socket))
        for path in unix_paths:
            sockets.append(_bind_unix(path))
            bound.append(path)
            if f"unix:{path}" not in addresses:
                addresses.append(f"unix:{path}")
        if socket_group:
            _open_to_group(unix_paths, data_dir.root, socket_group)
        _run(data_dir, addresses, sockets, lock, prepare, tls, socket_group, database, node)
    finally:
        for sock in sockets:
            sock.close()
        for path in bound:
            with contextlib.suppress(OSError):
                os.unlink(path)
        lock.release()


class _MainServer(uvicorn.Server):
    """The server that takes the signals. Stopped by one, it returns and the process
    cleans up after itself (its pid file, its socket, where it listens, the store), where
    uvicorn would raise the signal again once stopped, its default action ending the
    process before any of that (a stale socket and pid file were left behind)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


class _SecondServer(uvicorn.Server):
    """A server beside the first on the same loop: the first one takes the signals (and
    stops this one)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_all(servers: list[tuple[uvicorn.Server, list[socket.socket]]]) -> None:
    """The first server, then the others once it has started (the application is up);
    all of them stop when one is told to."""
    (main, main_sockets), *others = servers
    tasks = [asyncio.create_task(main.serve(sockets=main_sockets))]
    while others and not main.started and not tasks[0].done():
        await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(uv.serve(sockets=socks)) for uv, socks in others]
    while not all(task.done() for task in tasks):
        if any(uv.should_exit for uv, _ in servers):
            for uv, _ in servers:
                uv.should_exit = True
        await asyncio.wait(tasks, timeout=0.1)
    for task in tasks:
        task.result()


def _run(data_dir: DataDir, addresses: list[str], sockets: list[socket.socket],
         lock: ServerLock, prepare: Callable[[Backend], None] | None,
         tls: Certificate | None, socket_group: str | None, database: str | None,
         node: str | None) -> None:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    # `kill -USR1 PID` writes every thread's stack to the server's log: what a server that
    # is slow to stop (or to answer) is doing, without stopping it.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    try:
        store = Store(database or data_dir.database)
    except StoreError as exc:
        raise ServerError(str(exc)) from None
    try:
        try:
            fleet.ensure_builtin(store, "server")
        except WorkdeckError as exc:  # a worker by hand holds its name: say so, serve on
            log.warning("the built-in worker is not there: %s", exc)
        try:  # a name that is no name, or one alive elsewhere: said, not served
            backend = Backend(data_dir, listen=addresses[0], store=store, node=node)
            backend.vault.agree(store)
            backend.nodes.register()
        except WorkdeckError as exc:
            raise ServerError(str(exc)) from None
        backend.socket_group = socket_group
        if not addresses[0].startswith("unix:"):
            backend.token = _api_token(data_dir)
            backend.tls_fingerprint = tls.fingerprint if tls else None
            scheme = "https" if tls else "http"
            addresses[0] = f"{scheme}://{addresses[0]}"
            log.warning("serving the API on %s%s; clients need a token (`workdeck token "
                        "create`)", addresses[0],
                        f" with the TLS certificate {tls.fingerprint}" if tls else "")
        interrupted = backend.runs.recover()
        if interrupted:
            log.warning("%d runs were interrupted by the last stop of the server", interrupted)
        if prepare:
            prepare(backend)
        backend.listen = addresses[0]
        app = create_app(backend)
        common: dict[str, Any] = {"log_level": "warning", "access_log": False,
                                  "timeout_graceful_shutdown": 2, "http": PeerHTTPProtocol}
        # TLS on the TCP address only: the Unix socket is served plainly by the first
        # server (which runs the application's start and stop), the TCP address with the
        # certificate by a second one on the same loop.
        tcp = [s for s in sockets if s.family != socket.AF_UNIX] if tls else []
        main = _MainServer(uvicorn.Config(app, lifespan="on", **common))
        servers: list[tuple[uvicorn.Server, list[socket.socket]]] = [
            (main, [s for s in sockets if s not in tcp])]
        if tcp and tls:
            servers.append((_SecondServer(uvicorn.Config(
                app, lifespan="off", ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file,
                **common)), tcp))

        def stop() -> None:
            for uv, _ in servers:
                uv.should_exit = True

        backend.stop_callback = stop
        fd = os.open(data_dir.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{os.getpid()}\n")
        lock.record(addresses)
        try:
            asyncio.run(_serve_all(servers))
        finally:
            with contextlib.suppress(OSError):
                data_dir.pid_file.unlink()
    finally:
        store.close()
