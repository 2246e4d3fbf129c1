"""A real SSH server that runs commands on this machine in a scratch folder.

The demo fleet is made of these, each with its own host key on its own loopback
port, and so are the fast in-process SSH servers of the tests. Commands run under
`/bin/sh -c` as a login shell would run them, with HOME set to the scratch folder
so that nothing the fleet does lands outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import asyncssh


class LocalSSHServer:
    def __init__(self, root: Path, *, authorized_keys: list[str],
                 host_key: asyncssh.SSHKey | None = None, host: str = "127.0.0.1",
                 port: int = 0, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.host = host
        self.port = port
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self.authorized_keys = authorized_keys
        self.env = env or {}
        self.sessions = 0
        self._server: asyncssh.SSHAcceptor | None = None
        self._processes: set[asyncio.subprocess.Process] = set()
        self._connections: set[asyncssh.SSHServerConnection] = set()

    @property
    def host_public_key(self) -> str:
        return self.host_key.export_public_key("openssh").decode().strip()

    @property
    def fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    async def start(self) -> LocalSSHServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = await asyncssh.listen(
            self.host,
            self.port,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                "\n".join(self.authorized_keys) + "\n"),
            process_factory=self._handle,
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            line_editor=False,
            acceptor=self._connections.add,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        self.sessions += 1
        command = process.command or "exec /bin/sh -i"
        env = {**os.environ, "HOME": str(self.root), **self.env,
               **{k: v for k, v in process.env.items() if isinstance(k, str)}}
        child = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.root, env=env,
            start_new_session=True,  # a process group, so a closed channel ends all of it
        )
        self._processes.add(child)
        try:
            feeding = asyncio.create_task(_copy_stdin(process.stdin, child.stdin))
            output = asyncio.gather(_copy(child.stdout, process.stdout),
                                    _copy(child.stderr, process.stderr))
            closed = asyncio.ensure_future(process.wait_closed())
            await asyncio.wait({output, closed}, return_when=asyncio.FIRST_COMPLETED)
            feeding.cancel()
            if not output.done():
                # The client closed the channel (a timeout, a cancel): the finally below
                # ends the command rather than leave it running unseen.
                output.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await output
                return
            closed.cancel()
            status = await child.wait()
            process.exit(status if status >= 0 else 128 - status)
        except (asyncssh.Error, ConnectionError):
            process.exit(255)
        finally:
            self._processes.discard(child)
            if child.returncode is None:
                # The channel closed first (cancel, dropped client): end the whole group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                await child.wait()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Like a host going away: established connections end too, not only the listener.
        for conn in list(self._connections):
            conn.close()
        self._connections.clear()
        for child in list(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


async def _copy(source: asyncio.StreamReader, target: asyncssh.SSHWriter) -> None:
    while chunk := await source.read(65536):
        target.write(chunk)
        await target.drain()


async def _copy_stdin(source: asyncssh.SSHReader, target: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncssh.Error):
        while chunk := await source.read(65536):
            target.write(chunk)
            await target.drain()
        target.close()
