"""What a client learns of a server's TLS certificate before it trusts it."""

from __future__ import annotations

import socket
import ssl

from wire.certs import fingerprint

TIMEOUT_S = 5.0


def certificate(host: str, port: int) -> str:
    """The certificate the server presents (PEM), trusted or not."""
    return ssl.get_server_certificate((host, port), timeout=TIMEOUT_S)


def presented(host: str, port: int) -> str:
    """Its fingerprint, or a word on why there is none."""
    try:
        return fingerprint(certificate(host, port))
    except (OSError, ValueError) as exc:
        return f"none that could be read ({exc})"


def vouched_for(host: str, port: int) -> bool:
    """Does a certificate authority this machine trusts vouch for the server's name?"""
    context = ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except ssl.SSLCertVerificationError:
        return False
