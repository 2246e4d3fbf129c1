"""The built-in worker: commands run on the server's own machine, under the server's account."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from backend.transport.ssh import CommandResult, SSHFailure, read_bounded


class LocalRunner:
    """Runs commands as the SSH layer does, with the same result and failure types."""

    async def run(self, command: str, *, timeout: float, stdin: bytes | None = None
                  ) -> CommandResult:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=os.path.expanduser("~"),
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
        try:
            async with asyncio.timeout(timeout):
                if stdin is not None:
                    process.stdin.write(stdin)
                process.stdin.close()
                (stdout, cut_out), (stderr, cut_err) = await asyncio.gather(
                    read_bounded(process.stdout), read_bounded(process.stderr)
                )
                await process.wait()
        except TimeoutError:
            raise SSHFailure(f"timed out after {timeout:g}s") from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        return CommandResult(
            exit_status=process.returncode if process.returncode >= 0 else None,
            stdout=stdout,
            stderr=stderr,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            truncated=cut_out or cut_err,
        )
