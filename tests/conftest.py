"""Fixtures: real SSH servers (in-process asyncssh and OpenSSH), a real Workdeck server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import asyncssh
import pytest
from click.testing import CliRunner
from contract import Contract
from openssh import OpenSSHServer, find_sshd
from postgres import PostgresServer, find_postgres

from backend import loopwatch
from backend.demo.sshd import LocalSSHServer
from console.cli import cli
from console.client import Client, Target
from wire.datadir import DataDir

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

THREAD_SAFETY_ERRORS = ("Non-thread-safe operation", "attached to a different loop",
                        "was never awaited", loopwatch.STORE_ON_LOOP)


def pytest_configure(config: pytest.Config) -> None:
    # The whole suite runs with asyncio's debug mode, in this process and in every server
    # it starts: an asyncio object touched from a thread raises there ("Non-thread-safe
    # operation"), and every callback slower than 100 ms is logged with its duration.
    # (A hook, not an import side effect: the benchmarks import this module too.)
    # (pytest-asyncio's own loops: asyncio_debug in pyproject.toml.)
    os.environ.setdefault("PYTHONASYNCIODEBUG", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Locally, WORKDECK_TEST_STORES=sqlite runs the tests of both stores on one, for speed;
    # CI always runs both.
    wanted = os.environ.get("WORKDECK_TEST_STORES")
    if not wanted or ON_CI:
        return
    kept = [item for item in items if _store_of(item) in (None, *wanted.split(","))]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


def _store_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("store_kind") if callspec else None


def short_tmp(prefix: str) -> Path:
    # Unix socket paths must stay under 108 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class LoopThread:
    """An event loop in a thread, hosting in-process SSH servers for synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def client_key() -> Iterator[Path]:
    folder = short_tmp("wd-key-")
    key = asyncssh.generate_private_key("ssh-ed25519", comment="workdeck tests")
    path = folder / "id_ed25519"
    key.write_private_key(str(path))
    path.chmod(0o600)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def public_key(path: Path) -> str:
    return asyncssh.read_private_key(str(path)).export_public_key("openssh").decode().strip()


@pytest.fixture
def ssh_servers(loop_thread: LoopThread, client_key: Path) -> Iterator[Any]:
    """Start in-process SSH servers (asyncssh) that accept the test client key."""
    started: list[LocalSSHServer] = []
    root = short_tmp("wd-ssh-")

    def start(name: str = "worker", **kwargs: Any) -> LocalSSHServer:
        server = LocalSSHServer(root / f"{name}-{len(started)}",
                                authorized_keys=[public_key(client_key)], **kwargs)
        loop_thread.run(server.start())
        started.append(server)
        return server

    def stop(server: LocalSSHServer) -> None:
        loop_thread.run(server.stop())

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for server in started:
        loop_thread.run(server.stop())
    shutil.rmtree(root, ignore_errors=True)


def missing(message: str, tests: str) -> NoReturn:
    """A real part is not here: skip the test, or fail it on CI, where every one must run."""
    if ON_CI:
        pytest.fail(f"{message}: {tests} must run on CI")
    pytest.skip(message)


def need_sshd() -> str:
    sshd = find_sshd()
    if sshd is None:
        missing("OpenSSH sshd is not installed (apt-get install openssh-server)",
                "the OpenSSH tests")
    return sshd


def clear_stale_rehash_lock(older_than_s: float = 10) -> None:
    """On these machines root's ~/.bashrc runs `pyenv rehash`, which every OpenSSH login
    as root goes through; a login shell killed mid-rehash (a test killing a session, a
    timed-out check) leaves its lock file behind, and from then on every root login
    waits on it for good. A rehash takes a fraction of a second: an older lock has no
    owner left, and goes."""
    lock = Path.home() / ".pyenv" / "shims" / ".pyenv-shim"
    with contextlib.suppress(OSError):
        if time.time() - lock.stat().st_mtime > older_than_s:
            lock.unlink()


@pytest.fixture(autouse=True, scope="session")
def no_stale_rehash_lock() -> Iterator[None]:
    """All along: a rehash lock left by a root login killed in some test (the suite runs
    in several processes) makes every root login wait, a dynamic worker's or a
    namespace's included, not only OpenSSH's: one older than 10 s has no owner, and goes."""
    done = threading.Event()

    def sweep() -> None:
        while not done.wait(2):
            clear_stale_rehash_lock()

    clear_stale_rehash_lock()
    thread = threading.Thread(target=sweep, name="rehash-lock-sweeper", daemon=True)
    thread.start()
    yield
    done.set()


@pytest.fixture
def openssh(client_key: Path) -> Iterator[Any]:
    """Start real OpenSSH servers on loopback ports; they accept the test client key."""
    need_sshd()
    clear_stale_rehash_lock()
    servers: list[OpenSSHServer] = []
    root = short_tmp("wd-sshd-")
    root.chmod(0o755)  # sshd reads authorized_keys as the account logging in

    def start(**kwargs: Any) -> OpenSSHServer:
        server = OpenSSHServer(root / f"sshd-{len(servers)}", **kwargs)
        with open(server.authorized_keys, "a") as keys:
            keys.write(public_key(client_key) + "\n")
        server.authorized_keys.chmod(0o644)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)
    clear_stale_rehash_lock(older_than_s=2)  # its sessions are gone: so is any rehash


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@dataclass
class Workdeck:
    """A real Workdeck server (its own process) and ways to talk to it."""

    data_dir: DataDir
    home: Path
    process: subprocess.Popen[bytes]
    database: str | None = None  # its PostgreSQL database; None: SQLite in data_dir

    @property
    def target(self) -> Target:
        return Target(self.data_dir, server_url=None)

    def client(self) -> Client:
        return Client(self.target)

    def cli(self, *args: str) -> CliResult:
        result = CliRunner().invoke(cli, ["--data-dir", str(self.data_dir.root), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def log(self) -> str:
        try:
            return self.data_dir.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def slow_callbacks(self, since: int = 0) -> list[float]:
        """CPU seconds used by each event-loop callback found slow (over 100 ms of the
        loop thread's own time, backend/loopwatch.py), in what the server logged after
        offset `since`."""
        import re

        from backend import loopwatch

        return [float(m) for m in re.findall(loopwatch.PATTERN, self.log()[since:])]


RECORD_ENV = "WORKDECK_RECORD_ANSWERS"  # backend/api/recording.py
_contract: list[Contract] = []


def answers_file(root: Path) -> Path:
    return root / "answers.jsonl"


def contract(client: Client) -> Contract:
    """The API's contract, as its OpenAPI document states it (read once per session)."""
    if not _contract:
        _contract.append(Contract(client.get("/openapi.json")))
    return _contract[0]


STORES = ("sqlite", "postgresql")
# Tests of what the store keeps run on both stores: `pytestmark = both_stores` (those of
# them that use a store: the workdeck, database, make_store or run_store fixtures).
both_stores = pytest.mark.both_stores


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_stores") and \
            "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", STORES, indirect=True)


@pytest.fixture(scope="session")
def postgres(unprivileged_user: str) -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session, as an unprivileged account."""
    bin_dir = find_postgres()
    if bin_dir is None:
        missing("PostgreSQL is not installed (apt-get install postgresql)",
                "the PostgreSQL tests")
    with PostgresServer(bin_dir, account=unprivileged_user) as server:
        yield server


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store a test's server uses: SQLite unless the test runs on both_stores."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database(store_kind: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A test's PostgreSQL database (a new one, its URL), or None for SQLite in the data
    directory."""
    if store_kind == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.database()
    yield url
    with contextlib.suppress(Exception):  # a test may have stopped the server
        server.drop(url)


@pytest.fixture
def make_store(tmp_path: Path, database: str | None) -> Iterator[Any]:
    """Open the test's store (SQLite in tmp_path, or its PostgreSQL database): a real
    store without a server. Every store it opened is closed at the end."""
    from backend.store.db import Store

    opened: list[Store] = []

    def make(name: str = "store.db") -> Store:
        opened.append(Store(database or tmp_path / name))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def start_workdeck(root: Path, home: Path, extra: list[str] | None = None,
                   database: str | None = None) -> tuple[DataDir, subprocess.Popen[bytes]]:
    data_dir = DataDir(root / "data")
    data_dir.ensure()
    # Every JSON answer is recorded, and checked against the API's contract afterwards.
    env = {**os.environ, "HOME": str(home), RECORD_ENV: str(answers_file(root))}
    env.pop("WORKDECK_SERVER", None)
    env.pop("WORKDECK_DATABASE", None)
    if database:
        env["WORKDECK_DATABASE"] = database
    log = open(data_dir.log_file, "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--data-dir", str(data_dir.root), "server",
         *(extra or [])],
        stdout=log, stderr=log, env=env, start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 20
    with Client(Target(data_dir)) as client:
        while not client.alive():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Workdeck server did not start:\n"
                                   + data_dir.log_file.read_text(errors="replace"))
            time.sleep(0.05)
    return data_dir, process


# A policy that makes results depend only on what a test arranges: the test machine's
# own load and disk must not turn a worker to "warning".
QUIET_POLICY = {"interval_s": 3600, "timeout_s": 5, "disk_free_warning_mb": 0,
                "load_warning_factor": 1000, "history_size": 120, "custom_script": ""}


@pytest.fixture
def workdeck(database: str | None) -> Iterator[Workdeck]:
    root = short_tmp("wd-")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    data_dir, process = start_workdeck(root, home, database=database)
    deck = Workdeck(data_dir, home, process, database)
    with deck.client() as client:
        client.put("/api/policy", QUIET_POLICY)
        client.put("/api/settings", {"builtin_worker": False})
        api = contract(client)
    yield deck
    broken = [line for line in deck.log().splitlines()
              if any(error in line for error in THREAD_SAFETY_ERRORS)]
    slow_stop = stop_workdeck(process, data_dir)
    # A server started later (a test's restart, a console starting a lost server again)
    # is not `process`: its pid file says who it is.
    with contextlib.suppress(OSError, ValueError):
        pid = int(data_dir.pid_file.read_text())
        if str(data_dir.root) in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGKILL)
    broken_contract = api.violations(answers_file(root))
    shutil.rmtree(root, ignore_errors=True)
    assert not broken, "the server touched asyncio objects off its loop:\n" + "\n".join(broken)
    assert not slow_stop, slow_stop
    assert not broken_contract, "answers that break the API's contract:\n" + \
        "\n".join(broken_contract)


# A stopping server gives its runs 15 s to kill their steps (a worker that does not
# answer), its SSH connections 3 s to close and uvicorn's 2 s to its clients: past these,
# it is stuck.
STOP_WAIT_S = 30


def stop_workdeck(process: subprocess.Popen[bytes], data_dir: DataDir) -> str:
    """Stop a server as `kill` does (SIGTERM) and wait; "" when it stopped in time and
    cleaned up after itself, else why not: what it left behind, or every thread's stack
    (SIGUSR1, backend/server.py) and its log's end, after which it is killed."""
    if process.poll() is not None:
        return ""
    process.terminate()
    try:
        process.wait(STOP_WAIT_S)
        left = [path.name for path in (data_dir.socket, data_dir.pid_file,
                                       data_dir.server_file) if path.exists()]
        return f"the server stopped but left {', '.join(left)} behind" if left else ""
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        # The stacks are in the log once the current thread's is (faulthandler writes it
        # last); a server too stuck to write them gets a few seconds.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "Current thread" not in (
                data_dir.log_file.read_text(errors="replace")
                if data_dir.log_file.exists() else ""):
            time.sleep(0.05)
        process.kill()
        process.wait()
    log = data_dir.log_file.read_text(errors="replace") if data_dir.log_file.exists() else ""
    return f"the server did not stop within {STOP_WAIT_S} s of SIGTERM:\n{log[-30_000:]}"


def need_root(what: str) -> None:
    """Skip a test that needs root here; fail it on CI, which runs as root."""
    if os.geteuid() != 0:
        message = f"{what} needs root (CI runs as root)"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)


UNPRIVILEGED = "workdeck-test"


@pytest.fixture(scope="session")
def unprivileged_user() -> str:
    """An ordinary account (with /bin/sh) to log in as, when the tests run as root."""
    import pwd

    if os.geteuid() != 0:
        return pwd.getpwuid(os.getuid()).pw_name
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", UNPRIVILEGED],
                       check=True, capture_output=True)
    # sshd without PAM refuses an account whose password is locked ("!").
    subprocess.run(["usermod", "-p", "*", UNPRIVILEGED], check=True, capture_output=True)
    return UNPRIVILEGED


@pytest.fixture
def run_store(make_store):
    """A real store holding run 1, for tests of a run's log without a server."""
    from backend.store.models import Run

    store = make_store("runs.db")
    with store.write() as session:
        session.add(Run(runbook="r", environment="e", definition="{}"))
    return store
