"""TLS certificates as server and clients both name them: by the SHA-256 of their DER
form, written `SHA256:` and colon-separated hex, as browsers show it."""

from __future__ import annotations

import hashlib
import ssl


def fingerprint(pem: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem)
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def same_fingerprint(a: str, b: str) -> bool:
    """Fingerprints as people copy them: with or without colons, in any case."""
    def plain(text: str) -> str:
        return text.strip().upper().removeprefix("SHA256:").replace(":", "")

    return plain(a) == plain(b)
