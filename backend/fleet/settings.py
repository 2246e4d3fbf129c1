"""Settings kept in the store, the machine policy among them."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from backend.fleet.audit import audit
from backend.store.db import Store
from backend.store.models import Setting
from wire.server import Policy


def get_setting(session: Session, key: str, default: Any) -> Any:
    row = session.get(Setting, key)
    return default if row is None else json.loads(row.value)


def put_setting(session: Session, key: str, value: Any) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=json.dumps(value)))
    else:
        row.value = json.dumps(value)
        session.add(row)


def get_policy(store: Store) -> Policy:
    with store.read() as session:
        return Policy(**get_setting(session, "policy", {}))


def set_policy(store: Store, policy: Policy, actor: str) -> Policy:
    with store.write() as session:
        before = get_setting(session, "policy", {})
        after = policy.model_dump()
        put_setting(session, "policy", after)
        changed = {k: v for k, v in after.items() if before.get(k, Policy().model_dump()[k]) != v}
        audit(session, actor, "policy.update", "machine policy", json.dumps(changed))
    return policy
