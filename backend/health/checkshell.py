"""A long-lived `/bin/sh` on a worker that runs health-check scripts, one at a time.

Opening an SSH session makes sshd fork and exec a login shell on the worker; on a
large fleet that is most of a check's cost on both ends. A check shell is opened once
per connection and each check is only a script written to its stdin and output read
back up to an end marker, so a routine check forks nothing on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque

import asyncssh

OUTPUT_LIMIT = 1 << 20


class ShellGone(Exception):
    """The check shell ended (the connection dropped, or the shell exited)."""


class CheckShell:
    def __init__(self, process: asyncssh.SSHClientProcess) -> None:
        self.process = process
        self._stderr: deque[bytes] = deque(maxlen=64)
        self._drain = asyncio.ensure_future(self._drain_stderr())
        self.dead = False
        self._definitions: set[str] = set()  # shell functions this shell has been given

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection) -> CheckShell:
        # Through the login shell, whatever it is (fish, csh, sh): all know `exec`.
        shell = cls(await conn.create_process("exec /bin/sh", encoding=None))
        shell.process.stdin.write(b"__wd_shell=1\n")
        return shell

    def _defined(self, definitions: str) -> bytes:
        """The definitions to send first: none once this shell has them."""
        if not definitions or definitions in self._definitions:
            return b""
        self._definitions.add(definitions)
        return definitions.encode() + b"\n"

    async def _drain_stderr(self) -> None:
        # Read stderr as it comes so a chatty script cannot stall the channel's window.
        with contextlib.suppress(Exception):
            while chunk := await self.process.stderr.read(65536):
                self._stderr.append(chunk)

    async def run(self, script: str, definitions: str = ""
                  ) -> tuple[int | None, bytes, bytes, bool]:
        """Run `script` (the functions it calls in `definitions`, sent to this shell once);
        return its last exit status, output, error output, truncation.

        A script may leave its output in the variable `__wd_o` rather than write it (the
        shell sets `__wd_shell` to say it may): the end marker writes it, so the output
        of a whole check is one write on the worker and one SSH packet."""
        token = secrets.token_hex(12)  # output cannot fake a marker it cannot guess
        marker = f"\n@@workdeck-end {token} ".encode()
        self._stderr.clear()
        try:
            self.process.stdin.write(
                self._defined(definitions) + script.encode()
                + f"\nprintf '%s\\n@@workdeck-end {token} %d\\n' \"${{__wd_o-}}\" \"$?\"; "
                  "__wd_o=\n".encode())
        except (BrokenPipeError, asyncssh.Error, OSError) as exc:
            self.close()
            raise ShellGone(str(exc)) from None
        head = bytearray()
        tail = bytearray()  # after OUTPUT_LIMIT: just enough to find the marker
        truncated = False
        while True:
            chunk = await self.process.stdout.read(65536)
            if not chunk:
                self.close()
                raise ShellGone("the check shell ended")
            if not truncated:
                head += chunk
                found = head.find(marker)
                if found >= 0:
                    return self._finish(head, found, marker, truncated)
                if len(head) > OUTPUT_LIMIT:
                    truncated = True
                    tail[:] = head[OUTPUT_LIMIT - len(marker):]
                    del head[OUTPUT_LIMIT:]
            else:
                tail += chunk
                found = tail.find(marker)
                if found >= 0:
                    return self._finish(tail, found, marker, truncated, keep=head)
                del tail[: max(0, len(tail) - len(marker) - 32)]

    def _finish(self, buffer: bytearray, found: int, marker: bytes, truncated: bool,
                keep: bytearray | None = None) -> tuple[int | None, bytes, bytes, bool]:
        rest = buffer[found + len(marker):]
        status_text, newline, _ = bytes(rest).partition(b"\n")
        if not newline:
            # The status line is split across reads; it is short and follows at once.
            status_text = bytes(rest)
        output = bytes(keep) if keep is not None else bytes(buffer[:found])
        try:
            status: int | None = int(status_text.strip() or b"x")
        except ValueError:
            status = None
        return status, output, b"".join(self._stderr), truncated

    def close(self) -> None:
        self.dead = True
        self._drain.cancel()
        with contextlib.suppress(Exception):
            self.process.close()
