"""Hosts as the server and the command line judge them."""

from __future__ import annotations

import ipaddress


def loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback: an address (127.0.0.1, ::1) or
    "localhost". Plain HTTP is served and sent only there."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"
