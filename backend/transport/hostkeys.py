"""Host keys: fingerprints, the user's known_hosts, and the pinning decision for one connection."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh


def fingerprint_of(public_key: str) -> str:
    """The SHA256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l` prints it."""
    return asyncssh.import_public_key(public_key).get_fingerprint("sha256")


def export_key(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


class KnownHosts:
    """The server account's ~/.ssh/known_hosts, re-read when it changes on disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(os.path.expanduser("~/.ssh/known_hosts"))
        self._stamp: float | None = None
        self._known: asyncssh.SSHKnownHosts | None = None

    def _load(self) -> asyncssh.SSHKnownHosts | None:
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            self._stamp, self._known = None, None
            return None
        if stamp != self._stamp:
            try:
                self._known = asyncssh.read_known_hosts(str(self.path))
            except (OSError, ValueError, asyncssh.KeyImportError):
                # An unreadable or malformed file trusts nothing rather than failing checks.
                self._known = None
            self._stamp = stamp
        return self._known

    def match(self, host: str, port: int) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey],
                                                  list[asyncssh.SSHKey]]:
        """For this host: its trusted keys, the certificate authorities (@cert-authority)
        that vouch for it, and the keys marked @revoked (refused whatever else says)."""
        known = self._load()
        if known is None:
            return [], [], []
        trusted, authorities, revoked, *_ = known.match(host, "", port if port != 22 else None)
        revoked = list(revoked)
        if port != 22:
            # asyncssh falls back to the host's entries without a port when "[host]:port"
            # has only @revoked ones, and so drops them: ask for that exact name as well.
            revoked += known.match(f"[{host}]:{port}", "", None)[2]
        return list(trusted), list(authorities), revoked

    def keys_for(self, host: str, port: int) -> list[asyncssh.SSHKey]:
        return self.match(host, port)[0]


@dataclass
class HostKeyDecision:
    """What one connection attempt learned about the server's host key."""

    pinned: str | None
    known_hosts: list[str] = field(default_factory=list)
    trust_host_key: bool = False
    # known_hosts has a @cert-authority for this host: only its certificates are trusted.
    certified_only: bool = False
    presented: str | None = None
    # "pin", "known_hosts", "cert-authority" or "first use"
    accepted_from: str | None = None

    def judge(self, key: asyncssh.SSHKey) -> bool:
        presented = export_key(key)
        self.presented = presented
        if self.pinned is not None:
            # A pinned key is the only key accepted: known_hosts never overrides it.
            if same_key(presented, self.pinned):
                self.accepted_from = "pin"
                return True
            return False
        if any(same_key(presented, k) for k in self.known_hosts):
            self.accepted_from = "known_hosts"
            return True
        if self.known_hosts:
            # known_hosts lists another key for this host: a change, never trusted blindly.
            return False
        if self.trust_host_key and not self.certified_only:
            self.accepted_from = "first use"
            return True
        return False

    @property
    def changed(self) -> bool:
        """The server presented a key other than the one on record."""
        return self.presented is not None and (
            self.pinned is not None or bool(self.known_hosts)
        ) and self.accepted_from is None


def same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]
