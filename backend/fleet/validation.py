"""Checks on what users type: hosts, ports, key files; names and free text are checked by
the one rule of wire.names, which the backend calls through here."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from pathlib import Path

import asyncssh

from backend.errors import InvalidInput
from wire.names import free_text, name, script_text  # noqa: F401 - the backend calls them here

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def worker_name(value: str) -> str:
    return name(value, "Worker name", spaces=False)


def pool_name(value: str) -> str:
    return name(value, "Pool name")


def environment_name(value: str) -> str:
    return name(value, "Environment name")


def host(value: str) -> str:
    value = (value or "").strip()
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(candidate))
    labels = candidate.rstrip(".").split(".")
    if candidate and len(candidate) <= 253 and all(_HOST_LABEL.match(label) for label in labels):
        return candidate
    raise InvalidInput(f"Host {value!r} is not a valid host name or IP address.")


def port(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InvalidInput(f"Port {value!r} is not a number between 1 and 65535.")
    return value


def capacity(value: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidInput(f"Capacity {value!r} is not a number of slots between 1 and 1000.")
    return value


def user(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return name(value, "User", spaces=False, limit=64)


def key_file(path: str | None) -> str | None:
    """Return the absolute path of a readable, unencrypted private key, or refuse it."""
    if not path:
        return None
    resolved = Path(os.path.expanduser(path)).absolute()
    if not resolved.exists():
        raise InvalidInput(f"Key file {resolved} does not exist.")
    if not resolved.is_file():
        raise InvalidInput(f"Key file {resolved} is not a file.")
    try:
        asyncssh.read_private_key(resolved)
    except PermissionError:
        raise InvalidInput(f"Key file {resolved} cannot be read by the server's account.") from None
    except asyncssh.KeyEncryptionError:
        raise InvalidInput(
            f"Key file {resolved} is protected by a passphrase; load it into ssh-agent and "
            "add the worker with --agent instead."
        ) from None
    except (asyncssh.KeyImportError, ValueError, OSError):
        raise InvalidInput(f"Key file {resolved} is not an SSH private key.") from None
    return str(resolved)
