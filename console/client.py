"""The API client used by the console and the command line; starts a local server if needed."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from console.errors import ApiError, ServerUnavailable
from wire import jsontext
from wire.datadir import DataDir
from wire.text import clean_line

CONNECT_TIMEOUT = 5.0
BIG_EVENT = 64 * 1024  # characters of an event decoded in a thread rather than inline
REQUEST_TIMEOUT = 120.0  # a check of a large fleet can take a while; the server bounds it

if TYPE_CHECKING:
    import httpx

    from console.local_http import Answer
    from console.profiles import Profile


SOCKET_TOKEN_ENV = "WORKDECK_SOCKET_TOKEN"  # console/web.py's consoles, over the socket


class Target:
    """Where the server is: a Unix socket in the data directory, or a URL; or several
    URLs, comma-separated, of server nodes sharing one database: a client goes to the
    next one when the one it uses does not answer (fail_over)."""

    def __init__(self, data_dir: DataDir, server_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.server_url = server_url or os.environ.get("WORKDECK_SERVER") or None
        self.profile: Profile | None = None
        if self.server_url and "://" not in self.server_url:
            # A profile saved by `workdeck login`: its URL, token and pinned certificate.
            from console import profiles

            self.profile = profiles.find(self.server_url)
            if self.profile is None:
                raise ApiError(f"No server is saved as {self.server_url!r}: `workdeck login "
                               f"https://HOST:PORT --name {self.server_url}` saves one (or "
                               "give a URL).")
            self.server_url = self.profile.url
        self.addresses = [url.strip() for url in (self.server_url or "").split(",")
                          if url.strip()]
        if self.addresses:
            self.server_url = self.addresses[0]

    def fail_over(self) -> bool:
        """Go to the next address (False: there is only one)."""
        if len(self.addresses) < 2:
            return False
        index = self.addresses.index(self.server_url) if self.server_url in self.addresses \
            else -1
        self.server_url = self.addresses[(index + 1) % len(self.addresses)]
        return True

    @property
    def local(self) -> bool:
        return self.server_url is None

    def describe(self) -> str:
        if len(self.addresses) > 1:  # none of them answered, when a client says so
            return " or ".join(self.addresses)
        return self.server_url or str(self.data_dir.socket)

    def headers(self) -> dict[str, str]:
        # Who is asking is the server's to know (the socket's account, or the token's
        # person): a client never says.
        headers: dict[str, str] = {}
        token = os.environ.get("WORKDECK_TOKEN") or (self.profile.token if self.profile
                                                     else None)
        if self.server_url and token:
            headers["Authorization"] = f"Bearer {token}"
        elif not self.server_url and (socket_token := os.environ.get(SOCKET_TOKEN_ENV)):
            # A browser's console that `workdeck web` runs: the person who signed in there,
            # not the account the socket sees (WORKDECK_TOKEN is for remote servers).
            headers["Authorization"] = f"Bearer {socket_token}"
        return headers

    def _options(self) -> dict[str, Any]:
        import httpx

        headers = self.headers()
        timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)
        if self.server_url:
            return {"base_url": self.server_url.rstrip("/"), "headers": headers,
                    "timeout": timeout,
                    "verify": self.profile.ssl_context(self.server_url) if self.profile
                    else True}
        return {"base_url": "http://workdeck", "headers": headers, "timeout": timeout}

    def sync_client(self) -> httpx.Client:
        import httpx

        options = self._options()
        if self.local:
            options["transport"] = httpx.HTTPTransport(uds=str(self.data_dir.socket))
        return httpx.Client(**options)

    def async_client(self) -> httpx.AsyncClient:
        import httpx

        options = self._options()
        if self.local:
            options["transport"] = httpx.AsyncHTTPTransport(uds=str(self.data_dir.socket))
        return httpx.AsyncClient(**options)


def _error_from(response: httpx.Response | Answer) -> ApiError:
    """The one way both clients read a refusal: its sentence and its code."""
    try:
        body = response.json()
        detail, code = body.get("detail"), body.get("code")
    except (ValueError, AttributeError):
        detail = code = None
    if not isinstance(detail, str):
        detail = f"The server answered {response.status_code} {response.reason_phrase}."
    # The sentence may quote what someone typed: it reaches a terminal inert.
    return ApiError(clean_line(detail, 1000), response.status_code,
                    code if isinstance(code, str) else "")


def _may_fail_over(exc: Exception, method: str) -> bool:
    """Whether a request that failed so may go to another node: at once when nothing
    reached this one, for a read whatever happened; never past a certificate that is not
    the one pinned (that is said, not hidden behind another node)."""
    import httpx

    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return False
    return isinstance(exc, httpx.ConnectError) or method == "GET"


def _unavailable(target: Target, exc: Exception) -> ApiError:
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return _untrusted(target)
    if target.local and (isinstance(exc, PermissionError) or "Permission denied" in str(exc)):
        # A server runs there, but not for this account: starting another would not help.
        return ApiError(f"This account may not use the socket {target.describe()}: the "
                        "server there is not open to your group (`workdeck server "
                        "--socket-group GROUP` on the server's host).")
    return ServerUnavailable(f"No Workdeck server answers at {target.describe()} ({exc}).")


def _untrusted(target: Target) -> ApiError:
    """The server's certificate is not the one pinned (or no authority vouches for it):
    refused, with both fingerprints, as SSH refuses a changed host key."""
    from urllib.parse import urlsplit

    from console.tls import presented

    where = urlsplit(target.server_url or "")
    shown = presented(where.hostname or "", where.port or 443)
    profile = target.profile
    pinned = profile.pinned_for(target.server_url) if profile is not None else None
    if profile is not None and pinned:
        return ApiError(
            f"The server at {target.server_url} presented the certificate {shown}, not "
            f"{pinned} pinned for {profile.name!r}: it may be a man-in-the-middle; "
            "if its certificate was replaced, check the new one (`workdeck server status` on "
            f"the server) and `workdeck login {target.server_url} --name {profile.name}` "
            "again.")
    return ApiError(f"No certificate authority this machine trusts vouches for the server at "
                    f"{target.server_url} (it presented {shown}): `workdeck login "
                    f"{target.server_url}` pins it once you have checked it.")


class Client:
    """Blocking API calls, for the command line: over the standard library to the local
    socket (console.local_http), through httpx to a server at a URL."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._local = None
        self._http = None
        if target.local:
            from console.local_http import LocalHTTP

            self._local = LocalHTTP(str(target.data_dir.socket), target.headers(),
                                    REQUEST_TIMEOUT)
        else:
            self._http = target.sync_client()

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response | Answer:
        if self._local is not None:
            from console.local_http import UNAVAILABLE

            try:
                response: httpx.Response | Answer = self._local.request(method, path,
                                                                        **kwargs)
            except TimeoutError:
                raise self._too_slow() from None
            except UNAVAILABLE as exc:
                raise _unavailable(self.target, exc) from None
        else:
            import httpx

            assert self._http is not None
            tries = len(self.target.addresses) or 1
            while True:
                tries -= 1
                try:
                    response = self._http.request(method, path, **kwargs)
                    break
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                        httpx.WriteError, FileNotFoundError) as exc:
                    # Another node, when there are several: at once when nothing reached
                    # this one, and for a read whatever happened (a write that may have
                    # been done is not sent twice).
                    if tries > 0 and _may_fail_over(exc, method) and self.target.fail_over():
                        self._http.close()
                        self._http = self.target.sync_client()
                        continue
                    raise _unavailable(self.target, exc) from None
                except httpx.TimeoutException:
                    raise self._too_slow() from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _too_slow(self) -> ApiError:
        return ApiError(f"The server at {self.target.describe()} did not answer in time.")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request_raw(self, method: str, path: str, **kwargs: Any) -> str:
        """The response body as text (for non-JSON answers such as a TOML export)."""
        return self._send(method, path, **kwargs).text

    def stream_events(self, path: str, params: dict[str, str] | None = None
                      ) -> Iterator[tuple[str, Any]]:
        """Yield (event, data) from a Server-Sent Events stream until it ends."""
        if self._local is not None:
            yield from self._stream_local(path, params)
            return
        import httpx

        assert self._http is not None
        try:
            with self._http.stream("GET", path, params=params,
                                   timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT)
                                   ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                yield from _parse_sse(response.iter_lines())
        except (httpx.HTTPError, FileNotFoundError) as exc:
            # Whether it never connected or broke off midway: one error for the caller.
            raise _unavailable(self.target, exc) from None

    def _stream_local(self, path: str, params: dict[str, str] | None
                      ) -> Iterator[tuple[str, Any]]:
        from console.local_http import UNAVAILABLE, Answer

        assert self._local is not None
        lines = self._local.stream_lines(path, params)
        try:
            first = next(lines)
        except UNAVAILABLE as exc:
            raise _unavailable(self.target, exc) from None
        assert isinstance(first, Answer)
        if first.status_code >= 400:
            raise _error_from(first)
        try:
            yield from _parse_sse(line for line in lines if isinstance(line, str))
        except UNAVAILABLE as exc:
            raise _unavailable(self.target, exc) from None

    def alive(self) -> bool:
        try:
            self.get("/api/server")
        except ServerUnavailable:
            return False
        except ApiError as exc:
            if exc.status_code != 403:
                raise
            # It answered, refusing the status to someone who may not see it: they may
            # still ask who they are (a person with no role yet, an unmapped account).
        return True


class AsyncClient:
    """Non-blocking API calls and the event stream, for the console."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._http = target.async_client()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fail_over(self) -> bool:
        """Use the next of several server nodes (False: there is only one)."""
        if not self.target.fail_over():
            return False
        old, self._http = self._http, self.target.async_client()
        await old.aclose()
        return True

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        tries = len(self.target.addresses) or 1
        while True:
            tries -= 1
            try:
                response = await self._http.request(method, path, **kwargs)
                break
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                    FileNotFoundError) as exc:
                if tries > 0 and _may_fail_over(exc, method) and await self.fail_over():
                    continue
                raise _unavailable(self.target, exc) from None
            except httpx.TimeoutException:
                raise ApiError(f"The server at {self.target.describe()} did not answer in "
                               "time.") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json() if response.content else None

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json=body)

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """Yield (event, data) from the server's push stream until it ends."""
        async for item in self.stream_events("/api/events"):
            yield item

    async def stream_events(self, path: str, params: dict[str, str] | None = None
                            ) -> AsyncIterator[tuple[str, Any]]:
        """Yield (event, data) from a Server-Sent Events stream until it ends."""
        import asyncio

        import httpx

        try:
            async with self._http.stream("GET", path, params=params,
                                         timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT)
                                         ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_from(response)
                parser = SSEParser(decode=False)
                async for line in response.aiter_lines():
                    if (item := parser.feed(line)) is not None:
                        event, raw = item
                        # A big event (a flood of log lines) is decoded off the event loop,
                        # so the console keeps answering keys meanwhile.
                        data = (await asyncio.to_thread(jsontext.loads, raw)
                                if len(raw) > BIG_EVENT else jsontext.loads(raw))
                        yield event, data
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                FileNotFoundError) as exc:
            raise _unavailable(self.target, exc) from None


class SSEParser:
    """Server-Sent Events, one line at a time: a complete event comes out on its blank line."""

    def __init__(self, *, decode: bool = True) -> None:
        self.event, self.data = "message", list[str]()
        self.decode = decode

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line.startswith(":"):
            return None
        if not line:
            raw = "\n".join(self.data)
            item = (self.event, jsontext.loads(raw) if self.decode else raw) if self.data \
                else None
            self.event, self.data = "message", []
            return item
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None


def _parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    parser = SSEParser()
    for line in lines:
        if (item := parser.feed(line)) is not None:
            yield item


def start_server(target: Target, *, extra_args: list[str] | None = None,
                 wait: float = 15.0) -> None:
    """Start a background server for the target's data directory and wait until it answers.

    Only when no server holds the directory: one that does (perhaps still starting, or
    listening on TCP as well) is waited for, never doubled.
    """
    from wire.serverlock import running

    data_dir = target.data_dir
    data_dir.ensure()
    if running(data_dir) is not None:
        _wait_for(target, wait)
        return
    # 0600: the data directory may be opened to a group (its socket), never its files.
    log = os.fdopen(os.open(data_dir.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                    "ab")
    with log:
        process = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "--data-dir", str(data_dir.root), "server",
             *(extra_args or [])],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the console and the operator's SSH session
            close_fds=True,
        )
    deadline = time.monotonic() + wait
    with Client(target) as client:
        while time.monotonic() < deadline:
            if client.alive():
                return
            if process.poll() is not None:
                if running(data_dir) is not None:
                    # Another client started one at the same moment: use that one.
                    _wait_for(target, max(0.0, deadline - time.monotonic()))
                    return
                raise ServerUnavailable(
                    f"The Workdeck server could not start: {_last_log_line(data_dir)}"
                )
            time.sleep(0.05)
    raise ServerUnavailable(
        f"The Workdeck server did not answer within {wait:g}s; see {data_dir.log_file}."
    )


def _wait_for(target: Target, wait: float) -> None:
    """A server holds the data directory: wait until it answers on its socket."""
    from wire.serverlock import describe, running

    deadline = time.monotonic() + wait
    with Client(target) as client:
        while True:
            if client.alive():
                return
            info = running(target.data_dir)
            if info is None:
                raise ServerUnavailable(
                    f"The Workdeck server of {target.data_dir.root} stopped while starting; "
                    f"see {target.data_dir.log_file}.")
            if time.monotonic() > deadline:
                raise ServerUnavailable(
                    describe(info, target.data_dir).split(";")[0]
                    + f", but does not answer on {target.data_dir.socket}.")
            time.sleep(0.05)


def ensure_server(target: Target) -> None:
    """Make sure a server answers: start one for a local data directory when none does."""
    with Client(target) as client:
        if client.alive():
            return
    if not target.local:
        raise ServerUnavailable(f"No Workdeck server answers at {target.describe()}.")
    with contextlib.suppress(OSError):
        owner = target.data_dir.root.stat().st_uid
        if owner != os.getuid():
            import pwd

            try:
                name = pwd.getpwuid(owner).pw_name
            except KeyError:
                name = f"uid {owner}"
            raise ServerUnavailable(
                f"No Workdeck server answers at {target.describe()}, and its data directory "
                f"is the account {name}'s: a server there is theirs to start.")
    start_server(target)


def _last_log_line(data_dir: DataDir) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in data_dir.log_file.read_text(errors="replace").splitlines() if ln]
        if lines:
            return lines[-1]
    return f"see {data_dir.log_file}"
