"""HTTP to the local server's Unix socket with the standard library only.

The command line mostly talks to a server on this machine; importing httpx (and asyncio
with it) cost it about a third of its running time, so the blocking client uses this
for the socket and keeps httpx for servers at a URL."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from wire import jsontext

READ_BUFFER = 1 << 20
# What a broken connection looks like here, for the client's "no server answers".
UNAVAILABLE = (ConnectionError, FileNotFoundError, PermissionError,
               http.client.HTTPException, socket.gaierror)


class _Response(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # A log streams megabytes: read it in large pieces, not 8 KB ones.
        self.fp = sock.makefile("rb", buffering=READ_BUFFER)  # type: ignore[assignment]


class _UnixConnection(http.client.HTTPConnection):
    response_class = _Response

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("workdeck", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Answer:
    """A response as the client reads it: status, reason and the body."""

    def __init__(self, status: int, reason: str, content: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsontext.loads(self.content)


class LocalHTTP:
    """Requests over one kept-alive connection to the socket at `path`."""

    def __init__(self, path: str, headers: dict[str, str], timeout: float) -> None:
        self.path = path
        self.headers = headers
        self.timeout = timeout
        self._connection: _UnixConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @staticmethod
    def _target(path: str, params: dict[str, Any] | None) -> str:
        # As httpx does: what a URL may not hold as typed (a space in a pool's name) is
        # percent-encoded; what is encoded already (%2F in a name) stays.
        path = quote(path, safe="/%?&=:@!$'()*+,;~")
        if not params:
            return path
        given = {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in params.items() if v is not None}
        return f"{path}{'&' if '?' in path else '?'}{urlencode(given)}" if given else path

    def _send(self, connection: _UnixConnection, method: str, target: str,
              body: Any) -> None:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, target, body=data, headers=headers)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> Answer:
        target = self._target(path, params)
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = _UnixConnection(self.path, self.timeout)
            try:
                self._send(self._connection, method, target, json)
                response = self._connection.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError):
                # A kept-alive connection the server closed meanwhile: once more, anew.
                self.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                # A connection that failed midway cannot send again: the next request
                # (a client waiting for a server to start, say) opens a new one.
                self.close()
                raise
            if response.will_close:
                self.close()
            return Answer(response.status, response.reason, content)
        raise AssertionError("unreachable")

    def stream_lines(self, path: str, params: dict[str, Any] | None = None
                     ) -> Iterator[Answer | str]:
        """The status first (an Answer, with the body read when it is an error), then each
        line of the body as it comes, on a connection of its own with no read timeout."""
        connection = _UnixConnection(self.path, None)
        try:
            self._send(connection, "GET", self._target(path, params), None)
            response = connection.getresponse()
            if response.status >= 400:
                yield Answer(response.status, response.reason, response.read())
                return
            yield Answer(response.status, response.reason, b"")
            # Whatever has come, up to a megabyte at a time, cut into lines here: reading
            # line by line through http.client's chunked reader took a quarter of the
            # time of following a flood of output.
            parts: list[bytes] = []  # of a line not ended yet
            while block := response.read1(READ_BUFFER):
                start = 0
                while (end := block.find(b"\n", start)) != -1:
                    parts.append(block[start:end])
                    yield b"".join(parts).decode("utf-8", "replace").rstrip("\r")
                    parts = []
                    start = end + 1
                if start < len(block):
                    parts.append(block[start:])
            if parts:
                yield b"".join(parts).decode("utf-8", "replace").rstrip("\r")
        finally:
            connection.close()
