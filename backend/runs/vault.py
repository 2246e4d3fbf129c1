"""Sensitive values at rest: encrypted with a key kept outside the database.

The key is a 0600 file in the data directory, so a copy of the database alone (a
backup, a support bundle) reveals no secret. Every server node using one database must
hold the same key (a run sealed by one is opened by another that claims or takes it
over): the database keeps the key's fingerprint, and a node with another key is refused
at start, as is a key file replaced under a store whose secrets it cannot open.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from backend.errors import Conflict
from backend.fleet.settings import get_setting, put_setting
from backend.store.db import Store


class Vault:
    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
        key = key_file.read_bytes().strip()
        self._fernet = Fernet(key)
        # Names the key without revealing it (the key itself is 32 random bytes).
        self.fingerprint = hashlib.sha256(b"workdeck vault\0" + key).hexdigest()[:16]

    def agree(self, store: Store) -> None:
        """Record this key's fingerprint in the store, or refuse a key that is not the one
        recorded (call in a thread)."""
        with store.write() as session:
            recorded = get_setting(session, "vault_key", None)
            if recorded is None:
                put_setting(session, "vault_key", self.fingerprint)
            elif recorded != self.fingerprint:
                raise Conflict(
                    f"The secret key {self.key_file} (fingerprint {self.fingerprint}) is not "
                    f"the one this store's sensitive values are sealed with (fingerprint "
                    f"{recorded}): every server using a database needs the same key; copy "
                    "secret.key from another server's data directory into this one's.")

    def seal(self, values: dict[str, str]) -> str:
        if not values:
            return ""
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def open(self, sealed: str) -> dict[str, str]:
        if not sealed:
            return {}
        try:
            return json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            # The key file was replaced: the secrets cannot be read, and saying so beats
            # running a step with empty credentials.
            raise ValueError(f"sensitive values cannot be decrypted with {self.key_file}")\
                from None
