"""The Workdeck server: owns the store, the SSH connections and the checks; serves the API."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hmac
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__, fleet
from backend.api import (
    checks,
    events,
    pools,
    recording,
    runbooks,
    runs,
    server,
    streams,
    workers,
)
from backend.api.limits import BodyLimit
from backend.api.names import KeepSlashes
from backend.errors import WorkdeckError
from backend.events import EventBus
from backend.fleet import advisor
from backend.fleet.usage import Usage
from backend.health.checker import HealthChecker
from backend.runs.engine import RunEngine
from backend.runs.logstore import LogHub
from backend.runs.orphans import Reaper
from backend.runs.vault import Vault
from backend.store import retention
from backend.store.db import Store
from backend.transport.ssh import ConnectionPool
from wire.datadir import DataDir
from wire.errors import ErrorBody, code_for
from wire.serverlock import AlreadyRunning, ServerLock

log = logging.getLogger("workdeck.server")

UNIX_PATH_MAX = 107
ADVICE_EVERY_S = 30.0  # health changes the advisor's findings too, without telling it
ADVICE_MIN_GAP_S = 10.0  # at most one pass this often: it reads the whole fleet
STORE_THREADS = 3
STORE_WATCH_S = 0.5  # how soon a console hears that the store refuses writes, or takes them


class ServerError(Exception):
    """The server cannot start; the message says why in one sentence."""


class Backend:
    """Everything one running server holds, shared by the API routes."""

    def __init__(self, data_dir: DataDir, *, listen: str, store: Store) -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.store = store
        self.bus = EventBus(retain=("worker",))
        self.connections = ConnectionPool()
        self.checker = HealthChecker(store, self.connections, self.bus)
        self.hub = LogHub()
        self.runs = RunEngine(store, self.connections, self.bus, Vault(data_dir.secret_key),
                              self.hub, self.checker)
        self.leases = self.runs.leases
        self.reaper = Reaper(store, self.leases, self.bus, self.runs.transport_for,
                             self.runs.publish_worker)
        self.leases.orphan_listeners.append(self.reaper.wake)
        self.usage = Usage(store, self.leases, self.bus)
        # New health results may free a slot for a queued step, and change the pools.
        self.checker.listeners.append(self.leases.wake)
        self.checker.health_listeners.append(self.advice_due)
        self.checker.health_listeners.append(self.usage.figures.invalidate)
        self.started = time.time()
        self.stop_callback: Callable[[], None] | None = None
        self.extra_tasks: list[Callable[[], Awaitable[None]]] = []
        self.token: str | None = None  # required of every request when serving over TCP
        self._advice_wake = asyncio.Event()
        # The advisor's last count, for snapshots (None until it has counted once).
        self.advice_counts: dict[str, int] | None = None
        self.data_dir_bytes = 0
        self.disk_free_bytes: int | None = None

    def status(self) -> dict[str, Any]:
        self.measure_data_dir()  # a few files and one statvfs: cheap enough to do here
        return {
            "version": __version__,
            "pid": os.getpid(),
            "data_dir": str(self.data_dir.root),
            "listen": self.listen,
            "started_at": self.started,
            "uptime_s": round(time.time() - self.started, 1),
            "connections": len(self.connections),
            "subscribers": self.bus.subscriber_count,
            # Why the store refuses writes now (e.g. "the data directory is full").
            "store_fault": self.store.fault,
            "data_dir_bytes": self.data_dir_bytes,
            "disk_free_bytes": self.disk_free_bytes,
        }

    def measure_data_dir(self) -> None:
        """The data directory's size and the free space beside it."""
        total = 0
        for entry in os.scandir(self.data_dir.root):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        self.data_dir_bytes = total
        with contextlib.suppress(OSError):
            stats = os.statvfs(self.data_dir.root)
            self.disk_free_bytes = stats.f_bavail * stats.f_frsize

    async def watch_store_forever(self) -> None:
        """Tell every console when the store starts or stops refusing writes."""
        said: str | None = None
        while True:
            if self.store.fault != said:
                said = self.store.fault
                self.bus.publish("server", "status", self.status())
            await asyncio.sleep(STORE_WATCH_S)

    def settings(self) -> dict[str, Any]:
        with self.store.read() as session:
            builtin = fleet.get_setting(session, "builtin_worker", True)
        kept = retention.get(self.store)
        return {"builtin_worker": builtin, **advisor.naming(self.store),
                "keep_runs_days": kept.runs_days, "keep_runs_gb": kept.runs_gb,
                "keep_audit_days": kept.audit_days}

    def advice_due(self) -> None:
        """The fleet changed in a way the advisor looks at: count its findings again soon."""
        self._advice_wake.set()

    async def count_advice_forever(self) -> None:
        """Keep every console's count of the advisor's findings current."""
        last: dict[str, int] | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advice_wake.wait(), ADVICE_EVERY_S)
            self._advice_wake.clear()
            try:
                counts = advisor.summary(await asyncio.to_thread(advisor.advise, self.store))
            except Exception:  # the count must not stop for good over one bad pass
                log.exception("the advisor failed")
                counts = None
            if counts is not None and counts != last:
                self.advice_counts = counts
                self.bus.publish("advice", "fleet", counts)
                last = counts
            await asyncio.sleep(ADVICE_MIN_GAP_S)

    def request_stop(self, actor: str) -> None:
        log.info("stop requested by %s", actor)
        if self.stop_callback:
            self.stop_callback()

    async def workers_changed(self, names: list[str], *, check: bool = False) -> dict[str, Any]:
        """Push the named workers' new state; optionally check them in the background."""
        self.checker.invalidate()
        self.usage.figures.reread()
        self.leases.wake()
        self.advice_due()
        current = await asyncio.to_thread(fleet.list_workers, self.store, names)
        for worker in current:
            self.bus.publish("worker", worker["name"], worker)
        if check:
            task = asyncio.create_task(self.checker.check_now(names))
            task.add_done_callback(_log_failure)
        return current[0] if current else {}

    async def resync(self) -> None:
        """Publish every worker and pool, e.g. after a change that touched many."""
        self.checker.invalidate()
        self.usage.figures.reread()
        self.leases.wake()
        self.advice_due()
        workers, all_pools = await asyncio.gather(
            asyncio.to_thread(fleet.list_workers, self.store),
            asyncio.to_thread(fleet.list_pools, self.store, self.leases.queued_by_pool()),
        )
        for worker in workers:
            self.bus.publish("worker", worker["name"], worker)
        for pool in all_pools:
            self.bus.publish("pool", pool["name"], pool)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background check failed: %s", task.exception())


def create_app(backend: Backend) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Few threads for the store: its writes queue for one lock anyway, and each busy
        # thread is one more the event loop waits behind for the GIL (the loop answers
        # every console; asyncio's default is the CPU count plus four).
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="store"))
        # With asyncio's debug mode on (PYTHONASYNCIODEBUG=1), callbacks slower than this
        # are logged: the tests and bench/faults.py read them.
        with contextlib.suppress(ValueError):
            loop.slow_callback_duration = float(os.environ.get("WORKDECK_SLOW_CALLBACK_S",
                                                               "0.1"))
        backend.bus.seed("worker", {w["name"]: w for w in await asyncio.to_thread(
            fleet.list_workers, backend.store)})
        _settle_garbage_collector()
        tasks = [asyncio.create_task(backend.checker.run_schedule()),
                 asyncio.create_task(backend.usage.run_forever()),
                 asyncio.create_task(backend.count_advice_forever()),
                 asyncio.create_task(backend.reaper.run_forever()),
                 asyncio.create_task(backend.watch_store_forever()),
                 asyncio.create_task(retention.prune_forever(backend.store))]
        tasks += [asyncio.create_task(start()) for start in backend.extra_tasks]
        backend.runs.resume_waiting()
        try:
            yield
        finally:
            # Runs first, while SSH connections are still open: their steps are killed.
            with contextlib.suppress(Exception):
                await backend.runs.shutdown()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await backend.checker.flush()
            await backend.connections.close()

    app = FastAPI(title="Workdeck", version=__version__, lifespan=lifespan)
    app.state.backend = backend

    if backend.token is not None:
        expected = f"Bearer {backend.token}".encode()

        @app.middleware("http")
        async def _require_token(request: Request, call_next):  # type: ignore[no-untyped-def]
            # Over TCP anyone who can reach the port could drive the fleet; the Unix
            # socket (no client address) is guarded by its 0600 mode instead.
            if request.scope.get("client") is None:
                return await call_next(request)
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"detail": "A valid API token is required "
                                     "(set WORKDECK_TOKEN).", "code": "unauthorized"},
                                    status_code=401)
            return await call_next(request)
    routers = [m.router for m in (workers, pools, checks, events, server, runbooks, runs)]
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimit)
    app.add_middleware(KeepSlashes)  # outermost: every route sees names whole
    if (record_to := recording.wanted()) is not None:
        app.add_middleware(recording.AnswerRecorder, path=record_to)

    # One error shape everywhere (wire.errors.ErrorBody): a sentence and a code.
    @app.exception_handler(WorkdeckError)
    async def _refused(_request: Request, exc: WorkdeckError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "code": exc.code},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse(
            {"detail": f"Invalid {where}: {first.get('msg', 'not understood')}.",
             "code": "invalid"},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such route: see /docs for the API."
        elif exc.status_code == 405:
            detail = "This route does not take that method: see /docs for the API."
        return JSONResponse({"detail": detail, "code": code_for(exc.status_code)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("a request failed")
        return JSONResponse({"detail": "The server failed on this request (its log says "
                                       "why).", "code": "internal"}, status_code=500)

    _document(app, [route for router in routers for route in router.routes])

    return app


def _document(app: FastAPI, routes: list[Any]) -> None:
    """The OpenAPI document tells the truth about refusals: every route may answer with
    the one error shape (not FastAPI's validation list), under the statuses it uses; and
    about the events of the streams."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        streams.document(schema, routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorBody"] = ErrorBody.model_json_schema()
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"description": "Refused: a sentence and a code",
                 "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                for status in ("400", "404", "409", "413", "422", "500"):
                    responses[status] = error
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def _settle_garbage_collector() -> None:
    # A full collection walks every object alive: the libraries, the fleet, the caches.
    # With ten thousand workers that took 0.15 s, stalling the event loop (and everyone it
    # serves) several times a minute during a sweep. What start-up made lives as long as
    # the server: collected once, then kept out of later passes. Full passes come after
    # a hundred middle ones rather than ten (Python's default): cyclic garbage is young
    # (a refused connection's exception), the old generation is the fleet's state.
    gc.collect()
    gc.freeze()
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


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


def serve(data_dir: DataDir, listen: str | None = None,
          prepare: Callable[[Backend], None] | None = None) -> None:
    """Run the server in the foreground until stopped (SIGTERM, SIGINT or the API).

    It always serves the data directory's Unix socket, where local clients look first;
    `listen` may add a TCP address for others.
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
            addresses = [f"{'[' + host + ']' if ':' in host else host}:{port}"]
        if str(data_dir.socket) not in unix_paths:
            unix_paths.append(str(data_dir.socket))
        for path in unix_paths:
            sockets.append(_bind_unix(path))
            bound.append(path)
            if f"unix:{path}" not in addresses:
                addresses.append(f"unix:{path}")
        _run(data_dir, addresses, sockets, lock, prepare)
    finally:
        for sock in sockets:
            sock.close()
        for path in bound:
            with contextlib.suppress(OSError):
                os.unlink(path)
        lock.release()


def _run(data_dir: DataDir, addresses: list[str], sockets: list[socket.socket],
         lock: ServerLock, prepare: Callable[[Backend], None] | None) -> None:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    store = Store(data_dir.database)
    try:
        fleet.ensure_builtin(store, "server")
        backend = Backend(data_dir, listen=addresses[0], store=store)
        if not addresses[0].startswith("unix:"):
            backend.token = _api_token(data_dir)
            log.warning("serving the API on %s; clients need WORKDECK_TOKEN from %s",
                        addresses[0], data_dir.token_file)
        interrupted = backend.runs.recover()
        if interrupted:
            log.warning("%d runs were interrupted by the last stop of the server", interrupted)
        if prepare:
            prepare(backend)
        config = uvicorn.Config(create_app(backend), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2, lifespan="on")
        uv = uvicorn.Server(config)

        def stop() -> None:
            uv.should_exit = True

        backend.stop_callback = stop
        data_dir.pid_file.write_text(f"{os.getpid()}\n")
        lock.record(addresses)
        try:
            asyncio.run(uv.serve(sockets=sockets))
        finally:
            with contextlib.suppress(OSError):
                data_dir.pid_file.unlink()
    finally:
        store.close()
