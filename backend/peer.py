"""Who is on the other end of a Unix socket connection, as the kernel says.

A local client cannot say who it is in a way worth believing: a header can be typed. The
kernel records the account of the process that connected (SO_PEERCRED), which no one can
choose. uvicorn hands the application no socket, so its HTTP protocol is extended to read
the credentials once per connection and put the account's uid in every request's scope
state (`peer_uid`), where the `Who` middleware (backend/api/app.py) reads it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: Any) -> int | None:
    """The uid of the process that connected to a Unix socket, or None over TCP."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    _pid, uid, _gid = _CREDENTIALS.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    return uid


class PeerHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, with the peer's uid in each request's scope state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        uid = peer_uid(transport.get_extra_info("socket"))
        if uid is not None:
            # The state is copied into every request's scope: one copy per connection.
            self.app_state = {**self.app_state, "peer_uid": uid}
