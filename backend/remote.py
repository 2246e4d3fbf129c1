"""Running one step's script on a worker: streamed output, a timeout, a kill that sticks.

The script travels on stdin (never on a command line, where `ps` would show its
variables) and runs in a process group of its own (`setsid`), whose id it reports
first. Cancelling or timing out kills that whole group from a second session and
checks that it is gone: this holds for root logins too, where OpenSSH before 10.0
refuses signal requests, and without a terminal, where closing the channel would
leave the process running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncssh

Output = Callable[[str, bytes], Awaitable[None]]

KILL_GRACE_S = 2.0


class Channel(Protocol):
    """One running command: the SSH session or the local process behind it."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def read(self, stream: str) -> bytes: ...
    async def wait(self) -> int | None: ...
    def close(self) -> None: ...


class Transport(Protocol):
    """How to reach a worker: start a command, or run a short one to completion."""

    async def start(self, command: str) -> Channel: ...
    async def run(self, command: str, timeout: float) -> tuple[int | None, bytes]: ...


@dataclass
class StepResult:
    exit_status: int | None  # None: no exit status came back (lost, killed)
    reason: str = ""
    timed_out: bool = False


def _inner(image: str | None, marker: str) -> str:
    """The command inside the new process group: report the group, then run stdin."""
    body = 's=$(cat); eval "$s" </dev/null'
    if image:
        # The container gets the script on stdin; `docker run -i` stays in this process
        # group, so killing the group ends it. "$1" is docker or podman.
        body = ('exec "$1" run --rm -i --network host ' + shlex.quote(image)
                + " /bin/sh -c " + shlex.quote(body))
    return f'printf "{marker} %s\\n" "$$" >&2; {body}'


def step_command(marker: str, image: str | None = None) -> str:
    """The command sent to the worker's login shell for a step."""
    if image:
        detect = ("if command -v docker >/dev/null 2>&1; then r=docker; "
                  "elif command -v podman >/dev/null 2>&1; then r=podman; "
                  'else echo "this worker has neither docker nor podman to run the step in '
                  'its container" >&2; exit 127; fi; ')
        return ("exec /bin/sh -c " + shlex.quote(
            detect + 'exec setsid -w /bin/sh -c "$0" "$r"') + " "
            + shlex.quote(_inner(image, marker)))
    shell = "if command -v bash >/dev/null 2>&1; then b=bash; else b=sh; fi; "
    return "exec /bin/sh -c " + shlex.quote(
        shell + 'exec setsid -w "$b" -c "$0"') + " " + shlex.quote(_inner(None, marker))


def script_text(script: str, variables: dict[str, str], work_dir: str) -> str:
    """Variables as quoted shell assignments (no value can break out), then the script."""
    lines = [f"{name}={shlex.quote(value)}" for name, value in variables.items()]
    lines.append(f"w={shlex.quote(work_dir)}; case \"$w\" in /*) ;; *) w=\"$HOME/$w\" ;; esac")
    lines.append('mkdir -p "$w" 2>/dev/null; cd "$w" 2>/dev/null; unset w')
    return "\n".join(lines) + "\n" + script + "\n"


async def run_step(transport: Transport, script: str, *, image: str | None,
                   timeout: float, output: Output) -> StepResult:
    """Run `script` and stream its output until it ends, times out or is cancelled."""
    marker = f"@@workdeck-pgid-{secrets.token_hex(8)}"
    channel = await transport.start(step_command(marker, image))
    pgid: list[int] = []
    try:
        await channel.write_stdin(script.encode())
        async with asyncio.timeout(timeout):
            await asyncio.gather(_pump(channel, "stdout", output),
                                 _pump(channel, "stderr", output, marker, pgid))
            status = await channel.wait()
        return StepResult(status, "" if status is not None else
                          "the session ended without an exit status (connection lost?)")
    except TimeoutError:
        await asyncio.shield(kill_group(transport, pgid))
        return StepResult(None, f"timed out after {timeout:g}s; its processes were killed",
                          timed_out=True)
    except asyncio.CancelledError:
        await asyncio.shield(kill_group(transport, pgid))
        raise
    finally:
        channel.close()


async def _pump(channel: Channel, stream: str, output: Output, marker: str | None = None,
                pgid: list[int] | None = None) -> None:
    pending = marker.encode() if marker else None
    buffer = b""
    while True:
        data = await channel.read(stream)
        if not data:
            if buffer:
                await output(stream, buffer)
            return
        if pending is not None:
            # The first line on stderr is ours: the process group to kill on cancel.
            buffer += data
            line, newline, rest = buffer.partition(b"\n")
            if not newline:
                if len(buffer) < 256:
                    continue
                pending = None
                data, buffer = buffer, b""
            else:
                if line.startswith(pending) and pgid is not None:
                    with contextlib.suppress(ValueError):
                        pgid.append(int(line[len(pending):].strip()))
                    data = rest
                else:
                    data = buffer
                pending, buffer = None, b""
            if not data:
                continue
        await output(stream, data)


async def kill_group(transport: Transport, pgid: list[int]) -> bool:
    """TERM, then KILL, the step's process group; True when it is gone."""
    if not pgid:
        return False
    group = pgid[0]
    # dash's kill takes no "--"; a negative number right after the signal is a group.
    check = (f"kill -TERM -{group} 2>/dev/null; i=0; "
             f"while kill -0 -{group} 2>/dev/null && [ $i -lt {int(KILL_GRACE_S * 10)} ]; "
             f"do sleep 0.1; i=$((i+1)); done; "
             f"kill -KILL -{group} 2>/dev/null; sleep 0.1; "
             f"if kill -0 -{group} 2>/dev/null; then echo alive; else echo gone; fi")
    try:
        _status, out = await transport.run(check, timeout=KILL_GRACE_S + 10)
    except Exception:
        return False
    return out.strip().endswith(b"gone")


# ---------------------------------------------------------------- transports


class _SSHChannel:
    def __init__(self, process: asyncssh.SSHClientProcess) -> None:
        self.process = process

    async def write_stdin(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.write_eof()

    async def read(self, stream: str) -> bytes:
        reader = self.process.stdout if stream == "stdout" else self.process.stderr
        try:
            return await reader.read(65536)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError):
            return b""

    async def wait(self) -> int | None:
        completed = await self.process.wait(check=False)
        if completed.exit_signal is not None or completed.exit_status in (None, -1):
            return None
        return completed.exit_status

    def close(self) -> None:
        self.process.close()


class SSHTransport:
    def __init__(self, connection: Any) -> None:
        self.connection = connection  # an asyncssh.SSHClientConnection

    async def start(self, command: str) -> Channel:
        return _SSHChannel(await self.connection.create_process(command, encoding=None))

    async def run(self, command: str, timeout: float) -> tuple[int | None, bytes]:
        result = await asyncio.wait_for(
            self.connection.run(command, encoding=None, check=False), timeout)
        return result.exit_status, result.stdout or b""


class _LocalChannel:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def write_stdin(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await self.process.stdin.drain()
        self.process.stdin.close()

    async def read(self, stream: str) -> bytes:
        reader = self.process.stdout if stream == "stdout" else self.process.stderr
        assert reader is not None
        return await reader.read(65536)

    async def wait(self) -> int | None:
        status = await self.process.wait()
        return status if status >= 0 else None

    def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


class LocalTransport:
    """The built-in worker: the server's own machine, under the server's account."""

    async def start(self, command: str) -> Channel:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=os.path.expanduser("~"), start_new_session=True)
        return _LocalChannel(process)

    async def run(self, command: str, timeout: float) -> tuple[int | None, bytes]:
        # The health checks' runner: bounded output, and a timeout that kills, not leaks.
        from backend.local import LocalRunner

        result = await LocalRunner().run(command, timeout=timeout)
        return result.exit_status, result.stdout
