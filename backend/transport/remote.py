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
from collections.abc import Awaitable, Callable, Collection
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
    # After an end that was not a clean exit: True when the step's processes were
    # killed and seen gone, False when that could not be confirmed (they may live on).
    killed: bool | None = None


@dataclass
class StepProcess:
    """What identifies a step's processes on its worker, so that they can be found and
    killed later, even by a server started after this one died.

    `marker` is in the command line of the step's shell from its start; `pgid` is its
    process group, `boot_id` the worker's boot and `started` the group leader's start
    time (clock ticks since boot), so that a reused process number is never mistaken
    for the step.
    """

    marker: str
    pgid: int | None = None
    boot_id: str = ""
    started: str = ""
    # The container the step runs in (container_name), when it names an image: it lives
    # outside the process group (podman leaves it to conmon, docker to its daemon).
    container: str = ""
    gone: bool | None = None  # set by kill_group: True once the group was seen gone


def new_marker() -> str:
    return f"@@workdeck-pgid-{secrets.token_hex(8)}"


def container_name(marker: str) -> str:
    """The name of a step's container, found again from its marker alone."""
    return "workdeck-" + marker.rsplit("-", 1)[-1]


def secrets_folder(marker: str) -> str:
    """Where a step's sensitive variables are written, one file each, readable by the
    step's account alone: in the container's own /tmp for a step in an image (gone with
    it), else the worker's, removed when the step ends or is killed. Found again from the
    marker alone, by the kill of a server that did not start the step."""
    return "/tmp/workdeck-secrets-" + marker.rsplit("-", 1)[-1]


# The container engines a step may run in, in the order they are tried: one that
# answers, not merely one installed (the docker client is often there with no daemon).
# podman has no daemon: its own version is its answer (`podman info` would say more, at
# ten times the cost, and slower still when several ask at once).
ENGINES = {"podman": "podman version --format '{{.Client.Version}}' >/dev/null 2>&1",
           "docker": "docker version --format '{{.Server.Version}}' >/dev/null 2>&1"}


# The first line the step's shell writes (on stderr): marker, process group, boot id and
# its own start time, read with shell builtins from /proc (empty where there is none).
# Positional parameters are a function's own in POSIX sh, so "$1" (the container
# runtime) survives the `set --`.
_REPORT = (
    '__wd_b=; read -r __wd_b < /proc/sys/kernel/random/boot_id 2>/dev/null; '
    '__wd_t=; __wd_st() { set -- $*; shift 19; __wd_t=$1; }; '
    'if read -r __wd_s < /proc/$$/stat 2>/dev/null; then __wd_st ${__wd_s##*) }; fi; '
    'printf "{marker} %s %s %s\\n" "$$" "$__wd_b" "$__wd_t" >&2; '
    'unset -f __wd_st; unset __wd_b __wd_t __wd_s; '
)


_RUN_STDIN = 's=$(cat); eval "$s" </dev/null'


def _inner(image: str | None, marker: str) -> str:
    """The command inside the new process group: report the group, then run stdin.

    In a container, "$1" is the engine and "$2" the work folder: the script arrives on
    the container's stdin, in the work folder mounted at the same path, with the same
    $HOME, so that the script finds its folder as it would outside."""
    body = _RUN_STDIN
    if image:
        # The marker as a label: the engine's command line still holds it once the
        # shell has become the engine (a server that died finds the step by it).
        body = ('exec "$1" run --rm -i --name ' + container_name(marker)
                + f' --label workdeck.marker={marker} --network host -e HOME="$HOME" '
                '-v "$2:$2" -w "$2" ' + shlex.quote(image)
                + " /bin/sh -c " + shlex.quote(_RUN_STDIN))
    return _REPORT.replace("{marker}", marker) + body


def step_command(marker: str, image: str | None = None, work_dir: str = ".",
                 engine: str | None = None, chosen: str | None = None) -> str:
    """The command sent to the worker's login shell for a step. `engine`: the one its
    last health check found answering, taken as long as it is installed (asking each
    engine costs a process); `chosen`: the one the worker (or else its pool) is set to use,
    and no other."""
    if not image:
        shell = "if command -v bash >/dev/null 2>&1; then b=bash; else b=sh; fi; "
        return "exec /bin/sh -c " + shlex.quote(
            shell + 'exec setsid -w "$b" -c "$0"') + " " + shlex.quote(_inner(None, marker))
    if chosen in ENGINES:
        choose = (f"e={chosen}; if ! {ENGINES[chosen]}; then echo \"the worker or its pool "
                  f"is set to run steps in an image with {chosen}, which does not answer "
                  "here\" >&2; exit 127; fi; ")
    else:
        known = engine if engine in ENGINES else ""
        choose = (f'e={known}; if [ -n "$e" ] && ! command -v "$e" >/dev/null 2>&1; '
                  'then e=; fi; ')
        choose += "".join(f"if [ -z \"$e\" ] && {test}; then e={name}; fi; "
                          for name, test in ENGINES.items())
        choose += ('if [ -z "$e" ]; then echo "no container engine answers on this worker '
                   f'(tried {" and ".join(ENGINES)}): the step needs one to run in its '
                   'image" >&2; exit 127; fi; ')
    folder = (f"d={shlex.quote(work_dir)}; case \"$d\" in /*) ;; *) d=\"$HOME/$d\" ;; "
              'esac; mkdir -p "$d" || exit 1; ')
    return ("exec /bin/sh -c " + shlex.quote(
        choose + folder + 'exec setsid -w /bin/sh -c "$0" sh "$e" "$d"') + " "
        + shlex.quote(_inner(image, marker)))


def script_text(script: str, variables: dict[str, str], work_dir: str,
                sensitive: Collection[str] = (), marker: str = "") -> str:
    """Into the work folder, then the variables as quoted shell assignments (no value can
    break out), then the script. The folder comes first so that no name the wrapper uses
    can clobber a runbook variable of the same name.

    Variables are exported: the programs a script starts see them in their environment,
    in a container too. Sensitive ones are the script's own shell variables, in no
    process's environment, where any program it starts (and `ps e`) could read them; the
    programs it starts find them as files in $WORKDECK_SECRETS instead (secrets_folder,
    0700, written with the shell's builtin printf: in no process's arguments either),
    removed when the script ends, however it ends (it runs in a subshell for that, so
    that neither its `exit` nor its own EXIT trap skips the removal).

    All of that is one line, ending where the script's first line begins: the shell's
    line numbers (in its error messages, in $LINENO) are then the script's own."""
    parts = [f"__wd_dir={shlex.quote(work_dir)}; case \"$__wd_dir\" in /*) ;; "
             "*) __wd_dir=\"$HOME/$__wd_dir\" ;; esac",
             'mkdir -p "$__wd_dir" 2>/dev/null; cd "$__wd_dir" 2>/dev/null; unset __wd_dir']
    newline = "__wd_nl"
    while newline in variables:  # never a runbook variable's name
        newline += "_"
    multi_line = any("\n" in value for value in variables.values())
    if multi_line:
        # A newline without a newline in the text: the last one of $(...) is kept by "_".
        parts.append(f"{newline}=$(printf '\\n_'); {newline}=${{{newline}%_}}")

    def quoted(value: str) -> str:
        return shlex.quote(value).replace("\n", f"'\"${newline}\"'")

    parts += [("" if name in sensitive else "export ") + f"{name}={quoted(value)}"
              for name, value in variables.items()]
    secret = [name for name in variables if name in sensitive]
    if secret and marker:
        folder = shlex.quote(secrets_folder(marker))
        failed = (f"then echo \"cannot write the step's sensitive variables to {folder}\" "
                  ">&2; ")
        # mkdir, not mkdir -p: a folder already there (someone else's) is never written to,
        # nor removed.
        parts += [f"if ! (umask 077 && mkdir {folder}); {failed}exit 1; fi",
                  "if ! (umask 077 && " + " && ".join(
                      f"printf %s {quoted(variables[name])} > {folder}/{name}"
                      for name in secret) + f"); {failed}rm -rf {folder}; exit 1; fi",
                  f"export WORKDECK_SECRETS={folder}"]
    if multi_line:
        parts.append(f"unset {newline}")
    if secret and marker:
        return ("; ".join(parts) + "; (" + script + "\n); __wd_r=$?; "
                f"rm -rf {shlex.quote(secrets_folder(marker))}; exit $__wd_r\n")
    return "; ".join(parts) + "; " + script + "\n"


async def run_step(transport: Transport, script: str, *, image: str | None,
                   timeout: float, output: Output, process: StepProcess, work_dir: str = ".",
                   engine: str | None = None, chosen: str | None = None,
                   on_started: Callable[[StepProcess], None] | None = None) -> StepResult:
    """Run `script` and stream its output until it ends, times out or is cancelled.

    Any end other than an exit status coming back (a timeout, a cancel, an error of our
    own) kills the step's process group before returning or raising.
    """
    if image and not process.container:
        process.container = container_name(process.marker)
    channel = await transport.start(step_command(process.marker, image, work_dir, engine,
                                                 chosen))
    reported: list[StepProcess] = []

    def started(found: StepProcess) -> None:
        process.pgid, process.boot_id, process.started = found.pgid, found.boot_id, \
            found.started
        reported.append(process)
        if on_started is not None:
            on_started(process)

    try:
        await channel.write_stdin(script.encode())
        async with asyncio.timeout(timeout):
            await asyncio.gather(_pump(channel, "stdout", output),
                                 _pump(channel, "stderr", output, process.marker, started))
            status = await channel.wait()
        if status is not None:
            return StepResult(status)
        killed = await asyncio.shield(kill_group(transport, process))
        return StepResult(None, "the session ended without an exit status (connection lost?)",
                          killed=killed)
    except TimeoutError:
        killed = await asyncio.shield(kill_group(transport, process))
        return StepResult(None, f"timed out after {timeout:g}s; " + (
            "its processes were killed" if killed else
            "its processes could not be confirmed killed"), timed_out=True, killed=killed)
    except BaseException:
        # Cancelled, or an error of ours: the step must not run on unseen.
        await asyncio.shield(kill_group(transport, process))
        raise
    finally:
        channel.close()


async def _pump(channel: Channel, stream: str, output: Output, marker: str | None = None,
                started: Callable[[StepProcess], None] | None = None) -> None:
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
                if line.startswith(pending) and started is not None:
                    # "PGID BOOT START", where BOOT or START may be empty.
                    fields = [*line[len(pending):].decode("ascii", "replace").strip()
                              .split(" "), "", ""]
                    with contextlib.suppress(ValueError):
                        started(StepProcess(marker or "", int(fields[0]), fields[1],
                                            fields[2]))
                    data = rest
                else:
                    data = buffer
                pending, buffer = None, b""
            if not data:
                continue
        await output(stream, data)


def kill_script(process: StepProcess) -> str:
    """A POSIX sh script that removes the step's container (when it has one) with every
    engine that knows it, kills the step's process group if it is still the step's, TERM
    then KILL, and says `gone` or `alive` on its last line."""
    container = ""
    if process.container:
        container = (
            f"C={shlex.quote(process.container)}; CA=; for e in {' '.join(ENGINES)}; do "
            'command -v "$e" >/dev/null 2>&1 || continue; '
            'if [ "$e" = podman ]; then podman rm -f -t 0 "$C" >/dev/null 2>&1; '
            'else "$e" rm -f "$C" >/dev/null 2>&1; fi; '
            '"$e" inspect "$C" >/dev/null 2>&1 && CA=1; done; ')
        return (container + f"r=$({_group_kill(process)}); "
                'if [ -n "$CA" ]; then echo alive; else echo "$r"; fi')
    # The step's sensitive variables, when it had any, go with it.
    return (f"rm -rf {shlex.quote(secrets_folder(process.marker))}; "
            + _group_kill(process))


def _group_kill(process: StepProcess) -> str:
    q = shlex.quote
    # The marker (hex and dashes) is split so that this script's own command line never
    # holds it whole.
    half = len(process.marker) // 2
    return (
        f"B={q(process.boot_id)}; T={q(process.started)}; G={process.pgid or ''}; "
        f"M='{process.marker[:half]}''{process.marker[half:]}'; "
        # Another boot: nothing of the step can be left.
        'if [ -n "$B" ] && read -r b < /proc/sys/kernel/random/boot_id 2>/dev/null '
        '&& [ "$b" != "$B" ]; then echo gone; exit 0; fi; '
        # A leader with another start time is a new process that reused the number: the
        # step's group is gone (a number is not reused while its group lives).
        'if [ -n "$G" ] && [ -n "$T" ] && read -r s < /proc/$G/stat 2>/dev/null; then '
        's=${s##*) }; set -- $s; shift 19; if [ "$1" != "$T" ]; then echo gone; exit 0; fi; '
        'fi; '
        # No group known (the server died before it was reported): every group with a
        # process whose command line holds the marker.
        'if [ -z "$G" ]; then for f in $(printf %s "$M" | grep -lFf - /proc/[0-9]*/cmdline '
        '2>/dev/null); do p=${f#/proc/}; p=${p%/cmdline}; '
        'if read -r s < /proc/$p/stat 2>/dev/null; then s=${s##*) }; set -- $s; '
        'G="$G $3"; fi; done; fi; '
        'if [ -z "$G" ]; then echo gone; exit 0; fi; '
        # dash's kill takes no "--"; a negative number right after the signal is a group.
        'alive() { for g in $G; do kill -0 -$g 2>/dev/null && return 0; done; return 1; }; '
        'for g in $G; do kill -TERM -$g 2>/dev/null; done; i=0; '
        f'while alive && [ $i -lt {int(KILL_GRACE_S * 10)} ]; do sleep 0.1; i=$((i+1)); done; '
        'for g in $G; do kill -KILL -$g 2>/dev/null; done; sleep 0.1; '
        'if alive; then echo alive; else echo gone; fi'
    )


async def kill_group(transport: Transport, process: StepProcess) -> bool:
    """Kill the step's process group from a session of its own; True when it is gone."""
    try:
        _status, out = await transport.run(kill_script(process), timeout=KILL_GRACE_S + 10)
    except Exception:
        process.gone = False
        return False
    process.gone = out.strip().endswith(b"gone")
    return process.gone


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
        from backend.transport.local import LocalRunner

        result = await LocalRunner().run(command, timeout=timeout)
        return result.exit_status, result.stdout
