"""Saved servers (`workdeck login`): a name for a URL, the token to use there and the
certificate pinned for it, in the user's config directory, readable by them alone.

`--server NAME` (or WORKDECK_SERVER=NAME) picks a profile; a value with "://" is a URL.
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wire.certs import fingerprint


@dataclass(frozen=True)
class Profile:
    name: str
    url: str  # several, comma-separated: server nodes sharing one database
    token: str
    # PEM pinned at login, one per URL in their order (None: the system's CAs vouch).
    certificate: str | None

    def certificate_for(self, url: str | None) -> str | None:
        """The certificate pinned for `url` (the first URL's when None). Each node has
        its own: one context holding them all would not do, since self-made certificates
        share a name and OpenSSL checks a server against the first of that name only."""
        if not self.certificate:
            return None
        marker = "-----END CERTIFICATE-----"
        pems = [part + marker + "\n" for part in self.certificate.split(marker)
                if part.strip()]
        urls = self.url.split(",")
        if url in urls and len(pems) == len(urls):
            return pems[urls.index(url)]
        return pems[0]

    def ssl_context(self, url: str | None = None) -> ssl.SSLContext | bool:
        """How a client checks the server at `url`: against exactly the certificate pinned
        for it (its names are not checked: the certificate itself is what was trusted),
        else the system's certificate authorities."""
        pem = self.certificate_for(url)
        if pem is None:
            return True
        context = ssl.create_default_context(cadata=pem)
        context.check_hostname = False
        return context

    def pinned_for(self, url: str | None = None) -> str | None:
        pem = self.certificate_for(url)
        return fingerprint(pem) if pem else None


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "workdeck" / "profiles.json"


def load_all() -> dict[str, Any]:
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find(name: str) -> Profile | None:
    found = load_all().get(name)
    if not isinstance(found, dict):
        return None
    return Profile(name, str(found.get("url", "")), str(found.get("token", "")),
                   found.get("certificate") or None)


def save(profile: Profile) -> Path:
    """Keep the profile (0600, in a 0700 folder: it holds a token)."""
    target = path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    profiles = load_all()
    profiles[profile.name] = {"url": profile.url, "token": profile.token,
                              "certificate": profile.certificate}
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(profiles, out, indent=2)
    os.replace(temporary, target)
    return target
