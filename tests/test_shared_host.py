"""A shared ops host: the server's Unix socket opened to an OS group, and each local
client known by the kernel (SO_PEERCRED) as the person mapped to its account.

Real accounts, made here with groupadd/useradd (CI runs as root): clients run as them
by forking this process and dropping to their uid, groups and home (the machine's Python
lives in root's home, which they could not enter to start one of their own), then
running the real command line in the child.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import select
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Workdeck, need_root, short_tmp, start_workdeck
from test_runs import import_runbook, wait_run

from console.cli import cli

GROUP = "wdops"
MEMBERS = ("wdalice", "wdbob", "wdeve")  # in the group; wdeve is no one in Workdeck
OUTSIDER = "wdmallory"  # not in the group


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _ensure_account(name: str, groups: list[str]) -> Account:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name],
                       check=True, capture_output=True)
    if groups:
        subprocess.run(["usermod", "-a", "-G", ",".join(groups), name], check=True,
                       capture_output=True)
    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid,
                   tuple(os.getgrouplist(name, entry.pw_gid)), entry.pw_dir)


@pytest.fixture(scope="session")
def accounts() -> dict[str, Account]:
    need_root("making OS accounts")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True, capture_output=True)
    made = {name: _ensure_account(name, [GROUP]) for name in MEMBERS}
    made[OUTSIDER] = _ensure_account(OUTSIDER, [])
    return made


def as_account(account: Account, fn: Callable[[], Any], timeout: float = 60) -> Any:
    """Run `fn` in a child process that is `account` (its uid, groups and home), and
    return what it returned (JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups(list(account.groups))
            os.setgid(account.gid)
            os.setuid(account.uid)
            os.environ.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
            os.chdir(account.home)
            result = json.dumps(fn()).encode()
            with os.fdopen(write, "wb") as pipe:
                pipe.write(result)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    try:
        with os.fdopen(read, "rb") as pipe:
            while True:
                ready, _, _ = select.select([pipe], [], [], timeout)
                if not ready:
                    os.kill(pid, signal.SIGKILL)
                    raise AssertionError(f"the client as {account.name} did not finish")
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        _, status = os.waitpid(pid, 0)
    assert status == 0, f"the client as {account.name} failed (status {status})"
    return json.loads(b"".join(chunks))


def cli_as(account: Account, data_dir: Path, *args: str) -> tuple[int, str]:
    """The real command line as `account`: its exit code and what it printed."""
    def run() -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])
        return result.exit_code, result.output
    code, printed = as_account(account, run)
    return code, printed


@pytest.fixture
def shared(accounts) -> Iterator[Workdeck]:
    """A server whose socket is open to the group, in a data directory the group can
    reach (its parent passable by everyone, as /srv is)."""
    root = short_tmp("wdsh-")
    root.chmod(0o711)
    home = root / "home"
    home.mkdir()
    data_dir, process = start_workdeck(root, home, ["--socket-group", GROUP])
    deck = Workdeck(data_dir, home, process)
    yield deck
    process.terminate()
    process.wait(10)


def test_group_members_are_the_people_mapped_to_their_accounts(shared, accounts):
    deck = shared
    assert deck.cli("user", "add", "alice", "--os-user", "wdalice").code == 0
    assert deck.cli("user", "add", "bob", "--os-user", "wdbob").code == 0
    assert deck.cli("user", "grant", "bob", "viewer").code == 0
    data = str(deck.data_dir.root)

    code, said = cli_as(accounts["wdalice"], data, "whoami")
    assert code == 0, said
    assert "alice (socket, account wdalice): no role" in said
    code, said = cli_as(accounts["wdbob"], data, "whoami")
    assert code == 0 and "bob (socket, account wdbob): viewer" in said, said
    code, said = cli_as(accounts["wdbob"], data, "worker", "list")
    assert code == 0, said
    # A viewer is refused what needs more, by the server.
    code, said = cli_as(accounts["wdbob"], data, "user", "add", "mallory")
    assert code != 0 and "bob (viewer) may not change this" in said, said

    # In the group but no one in Workdeck: refused, by name, with the way in.
    eve = accounts["wdeve"]
    code, said = cli_as(eve, data, "whoami")
    assert code != 0
    assert f"The account wdeve (uid {eve.uid}) is no one in Workdeck" in said
    assert "--os-user wdeve" in said and "Traceback" not in said
    # Not in the group: the kernel refuses the connection; the client says why.
    code, said = cli_as(accounts[OUTSIDER], data, "whoami")
    assert code != 0 and "This account may not use the socket" in said, said
    assert "--socket-group" in said and "Traceback" not in said

    # The server says who is in, and `user list` shows each person's account.
    listed = deck.cli("user", "list").out
    assert "wdalice" in listed and "wdbob" in listed
    assert f"open to the group {GROUP}" in deck.cli("server", "status").out
    assert "refused a request over the socket from the account wdeve" in deck.log()


def test_only_the_socket_is_opened_to_the_group(shared, accounts):
    root = shared.data_dir.root
    gid = grp.getgrnam(GROUP).gr_gid
    folder = root.stat()
    assert stat.S_IMODE(folder.st_mode) == 0o710 and folder.st_gid == gid
    sock = shared.data_dir.socket.stat()
    assert stat.S_IMODE(sock.st_mode) == 0o660 and sock.st_gid == gid
    for path in root.rglob("*"):
        if path == shared.data_dir.socket or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & 0o007, f"{path} is open to others ({mode:04o})"
        if not path.is_dir():
            assert not mode & 0o077, f"{path} is open to the group ({mode:04o})"
    # A member can reach the socket but not list the folder or read its files.
    def look() -> list[str]:
        seen = []
        for action in (lambda: os.listdir(root), lambda: (root / "workdeck.db").read_bytes(),
                       lambda: (root / "server.log").read_bytes()):
            try:
                action()
                seen.append("read")
            except PermissionError:
                seen.append("refused")
        return seen
    assert as_account(accounts["wdbob"], look) == ["refused", "refused", "refused"]

    # Restarted without --socket-group, the folder and socket are the account's alone.
    assert shared.cli("server", "stop").code == 0
    shared.process.wait(10)
    # No server at all: a member does not try to start one in a directory not theirs.
    code, said = cli_as(accounts["wdbob"], str(root), "whoami")
    assert code != 0 and "its data directory is the account root's" in said, said
    assert not (root / "server.sock").exists()
    _, process = start_workdeck(root.parent, shared.home)
    try:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE(shared.data_dir.socket.stat().st_mode) == 0o600
        code, said = cli_as(accounts["wdalice"], str(root), "whoami")
        assert code != 0 and "may not use the socket" in said, said
    finally:
        process.terminate()
        process.wait(10)


def test_grants_scoped_to_environments_hold_over_the_socket(shared, accounts, tmp_path):
    deck = shared
    for env in ("Development", "Production"):
        deck.cli("env", "add", env)
    deck.cli("user", "add", "alice", "--os-user", "wdalice")
    deck.cli("user", "grant", "alice", "operator", "--env", "Development")
    import_runbook(deck, tmp_path, 'name = "Gate"\n[[steps]]\nname = "Look"\n'
                                   'manual = "Look, then approve."\n')
    data = str(deck.data_dir.root)
    alice = accounts["wdalice"]

    code, said = cli_as(alice, data, "run", "Gate", "--env", "Production")
    assert code != 0, said
    assert "alice (operator on Development) may not launch runs on Production." in said
    code, said = cli_as(alice, data, "run", "Gate", "--env", "Development")
    assert code == 0, said
    with deck.client() as client:
        run = client.get("/api/runs")[0]
        assert run["environment"] == "Development"
    wait_run(deck, run["id"], lambda r: r["status"] == "waiting")
    audit = deck.cli("audit", "--json").out
    assert "alice (socket, account wdalice)" in audit


def test_accounts_are_checked_when_mapped(shared, accounts):
    deck = shared
    said = deck.cli("user", "add", "zed", "--os-user", "no-such-account-here")
    assert said.code != 0 and "There is no account 'no-such-account-here'" in said.err
    assert deck.cli("user", "add", "alice", "--os-user", "wdalice").code == 0
    said = deck.cli("user", "add", "alias", "--os-user", "wdalice")
    assert said.code != 0 and "The account 'wdalice' is already alice's." in said.err
    assert "alias" not in deck.cli("user", "list").out  # nothing half-made

    data = str(deck.data_dir.root)
    assert cli_as(accounts["wdalice"], data, "whoami")[0] == 0
    assert deck.cli("user", "set", "alice", "--no-os-user").code == 0
    code, said = cli_as(accounts["wdalice"], data, "whoami")
    assert code != 0 and "is no one in Workdeck" in said
    assert deck.cli("user", "set", "alice", "--os-user", "wdalice").code == 0
    assert cli_as(accounts["wdalice"], data, "whoami")[0] == 0


def test_a_socket_group_the_server_cannot_use_is_refused(accounts):
    root = short_tmp("wdsh-")  # 0700: the group could not pass through it
    home = root / "home"
    home.mkdir()
    with pytest.raises(RuntimeError) as refused:
        start_workdeck(root, home, ["--socket-group", GROUP])
    assert f"The group {GROUP} cannot reach" in str(refused.value)
    assert f"{root} is closed to it (mode 0700)" in str(refused.value)
    with pytest.raises(RuntimeError) as refused:
        start_workdeck(root, home, ["--socket-group", "no-such-group-here"])
    assert "There is no group 'no-such-group-here' on this machine" in str(refused.value)


def test_unmapping_a_person_closes_their_open_stream(shared, accounts):
    deck = shared
    deck.cli("user", "add", "alice", "--os-user", "wdalice")
    deck.cli("user", "grant", "alice", "viewer")
    socket_path = str(deck.data_dir.socket)
    alice = accounts["wdalice"]
    ready, done = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # alice follows the push stream until the server ends it
        code = 1
        try:
            os.setgroups(list(alice.groups))
            os.setgid(alice.gid)
            os.setuid(alice.uid)
            import socket as sockets

            with sockets.socket(sockets.AF_UNIX) as client:
                client.connect(socket_path)
                client.sendall(b"GET /api/events HTTP/1.1\r\nHost: workdeck\r\n\r\n")
                first = client.recv(65536)
                os.write(ready[1], b"1" if b"200 OK" in first else b"0")
                client.settimeout(30)
                tail = first
                # Until the server ends the stream: its last chunk, or the connection.
                while not tail.endswith(b"\r\n0\r\n\r\n"):
                    piece = client.recv(65536)
                    if not piece:
                        break
                    tail = (tail + piece)[-16:]
            os.write(done[1], b"closed")
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(ready[0], 1) == b"1"  # the stream is open, as alice
        assert deck.cli("user", "set", "alice", "--no-os-user").code == 0
        readable, _, _ = select.select([done[0]], [], [], 30)
        assert readable and os.read(done[0], 16) == b"closed"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
