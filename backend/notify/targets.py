"""Notifications as stored: where to post, on which events, for which environments and
pools; their URL and secret sealed (a Slack webhook's URL is itself a secret)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from backend.errors import Conflict, InvalidInput, NotFound
from backend.fleet import audit, validation
from backend.fleet.audit import iso
from backend.runs.launch import environments
from backend.runs.vault import Vault
from backend.store.db import Store
from backend.store.models import Delivery, Notification, Pool

EVENTS = ("run-failed", "run-succeeded", "run-waiting", "worker-unavailable", "pool-short")
# What an on-call person wants when nothing is said: what needs them.
DEFAULT_EVENTS = ("run-failed", "run-waiting", "worker-unavailable", "pool-short")
FORMATS = ("json", "slack")


@dataclass(frozen=True)
class Target:
    """A notification as deliveries need it (its URL and secret opened)."""

    id: int
    name: str
    url: str
    format: str
    events: frozenset[str]
    environments: frozenset[str]
    pools: frozenset[str]
    secret: str

    def wants(self, event: str, environment: str | None, pools: frozenset[str] | None
              ) -> bool:
        """Whether it is told of `event`: an environment or pools it is limited to must
        match, where the event has them (a worker has no environment)."""
        if event != "test" and event not in self.events:
            return False
        if self.environments and environment is not None \
                and environment not in self.environments:
            return False
        return not (self.pools and pools is not None and not self.pools & pools)


def shown_url(url: str) -> str:
    """The URL as listed: its scheme and host only (its path may be its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else \
        f"{parts.scheme}://{parts.netloc}"


def _url(value: str) -> str:
    value = (value or "").strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{value!r} is not an http:// or https:// URL with a host.")
    if any(ch.isspace() for ch in value) or len(value) > 2000:
        raise InvalidInput("A notification's URL has no spaces and at most 2,000 "
                           "characters.")
    return value


def _chosen(given: list[str], known: list[str], what: str) -> list[str]:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise InvalidInput(f"No {what} is named {unknown[0]!r} (known: "
                           f"{', '.join(known) or 'none'}).")
    return sorted(set(given))


def add(store: Store, vault: Vault, *, name: str, url: str, format: str, events: list[str],
        environments_: list[str], pools: list[str], secret: str | None, actor: str
        ) -> dict[str, Any]:
    name = validation.name(name, "Notification name")
    url = _url(url)
    if format not in FORMATS:
        raise InvalidInput(f"A notification's format is json or slack, not {format!r}.")
    events = _chosen(events or list(DEFAULT_EVENTS), list(EVENTS), "event")
    with store.read() as session:
        known_pools = sorted(session.exec(select(Pool.name)).all())
    chosen_envs = _chosen(environments_, environments(store), "environment")
    chosen_pools = _chosen(pools, known_pools, "pool")
    if secret is not None and len(secret) < 16:
        raise InvalidInput("A notification's secret has at least 16 characters (it signs "
                           "each body: a short one is guessed).")
    with store.write() as session:
        if session.exec(select(Notification).where(Notification.name == name)).first():
            raise Conflict(f"A notification named {name!r} already exists.")
        row = Notification(name=name, url=vault.seal({"url": url}), format=format,
                           events=json.dumps(events), environments=json.dumps(chosen_envs),
                           pools=json.dumps(chosen_pools),
                           secret=vault.seal({"secret": secret}) if secret else "",
                           actor=actor)
        session.add(row)
        audit(session, actor, "notification.add", name,
              f"{shown_url(url)} ({format}) on {', '.join(events)}")
        session.flush()
        return public(row, url)


def remove(store: Store, name: str, actor: str) -> None:
    with store.write() as session:
        row = session.exec(select(Notification).where(Notification.name == name)).first()
        if row is None:
            raise NotFound(f"No notification is named {name!r}.")
        session.delete(row)
        audit(session, actor, "notification.remove", name)


def public(row: Notification, url: str, last: Delivery | None = None,
           deliveries: list[Delivery] | None = None) -> dict[str, Any]:
    return {"name": row.name, "url": shown_url(url), "format": row.format,
            "events": json.loads(row.events), "environments": json.loads(row.environments),
            "pools": json.loads(row.pools), "signed": bool(row.secret), "actor": row.actor,
            "created_at": iso(row.created_at),
            "last": delivery_public(last) if last is not None else None,
            "deliveries": [delivery_public(d) for d in deliveries or []]}


def delivery_public(row: Delivery) -> dict[str, Any]:
    return {"id": row.id, "event": row.event, "subject": row.subject, "status": row.status,
            "attempts": row.attempts, "answer": row.answer, "created_at": iso(row.created_at),
            "delivered_at": iso(row.delivered_at),
            "next_at": iso(row.next_at) if row.status == "pending" else None}


def list_all(store: Store, vault: Vault) -> list[dict[str, Any]]:
    with store.read() as session:
        rows = session.exec(select(Notification).order_by(Notification.name)).all()
        shown = []
        for row in rows:
            last = session.exec(select(Delivery).where(Delivery.notification_id == row.id)
                                .order_by(col(Delivery.id).desc())).first()
            shown.append(public(row, vault.open(row.url)["url"], last))
    return shown


def get(store: Store, vault: Vault, name: str, recent: int = 20) -> dict[str, Any]:
    with store.read() as session:
        row = session.exec(select(Notification).where(Notification.name == name)).first()
        if row is None:
            raise NotFound(f"No notification is named {name!r}.")
        deliveries = list(session.exec(select(Delivery).where(
            Delivery.notification_id == row.id).order_by(col(Delivery.id).desc())
            .limit(recent)).all())
    return public(row, vault.open(row.url)["url"], deliveries[0] if deliveries else None,
                  deliveries)


def targets(store: Store, vault: Vault, name: str | None = None) -> list[Target]:
    with store.read() as session:
        query = select(Notification)
        if name is not None:
            query = query.where(Notification.name == name)
        rows = session.exec(query).all()
    return [Target(row.id or 0, row.name, vault.open(row.url)["url"], row.format,
                   frozenset(json.loads(row.events)), frozenset(json.loads(row.environments)),
                   frozenset(json.loads(row.pools)),
                   vault.open(row.secret).get("secret", "") if row.secret else "")
            for row in rows]
