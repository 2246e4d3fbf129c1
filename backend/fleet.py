"""Workers and pools in the store: the changes users make, validated and audited."""

from __future__ import annotations

import getpass
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, text
from sqlmodel import Session, select

from backend import validation
from backend.errors import Conflict, InvalidInput, NotFound
from backend.store.db import Store
from backend.store.models import (
    BUILTIN_WORKER,
    DEFAULT_POOL,
    DISABLED,
    AuditEvent,
    HealthCheck,
    HostKey,
    Lease,
    Pool,
    PoolMember,
    Setting,
    Worker,
    utcnow,
)
from backend.transport.hostkeys import fingerprint_of
from wire.server import Policy
from wire.workers import WorkerCreate


def iso(value: datetime | None) -> str | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def audit(session: Session, actor: str, action: str, target: str, detail: str = "") -> None:
    # Everything here may have come from outside (a name, a note, an error from a worker).
    session.add(AuditEvent(actor=validation.free_text(actor, 100, one_line=True),
                           action=action, target=validation.free_text(target, 300, one_line=True),
                           detail=validation.free_text(detail, 2000, one_line=True)))


# ---------------------------------------------------------------- settings


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


# ---------------------------------------------------------------- public shapes


def _pool_names(session: Session, worker_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    query = select(PoolMember.worker_id, Pool.name).join(Pool, Pool.id == PoolMember.pool_id)
    if worker_ids is not None:
        query = query.where(PoolMember.worker_id.in_(list(worker_ids)))
    names: dict[int, list[str]] = defaultdict(list)
    for worker_id, name in session.exec(query):
        names[worker_id].append(name)
    return names


def _lease_counts(session: Session, worker_ids: Iterable[int] | None = None) -> dict[int, int]:
    return {worker_id: held[0] for worker_id, held in _leases(session, worker_ids).items()}


def _leases(session: Session, worker_ids: Iterable[int] | None = None
            ) -> dict[int, tuple[int, int, str]]:
    """Per worker: slots held, how many of them by orphaned steps, and why (one reason)."""
    query = select(Lease.worker_id, func.count(),
                   func.sum(func.iif(Lease.orphan != "", 1, 0)), func.max(Lease.orphan)
                   ).group_by(Lease.worker_id)
    if worker_ids is not None:
        query = query.where(Lease.worker_id.in_(list(worker_ids)))
    return {worker_id: (count, orphans or 0, reason or "")
            for worker_id, count, orphans, reason in session.exec(query).all()}


_FACTS: dict[str, dict[str, Any]] = {}


def _facts(text: str | None) -> dict[str, Any]:
    # Facts change every few checks at most; parsing them again for every one of ten
    # thousand workers on every read was a third of the cost of listing them.
    if not text:
        return {}
    parsed = _FACTS.get(text)
    if parsed is None:
        if len(_FACTS) > 50_000:
            _FACTS.clear()
        parsed = _FACTS[text] = json.loads(text)
    return parsed


def worker_public(worker: Any, pools: list[str], pinned: str | None,
                  held: tuple[int, int, str] = (0, 0, "")) -> dict[str, Any]:
    """A worker as the API shows it; `worker` is a Worker or a row of its table, `pinned`
    the fingerprint of its pinned host key, `held` its slots as `_leases` counts them."""
    leases, orphans, orphan_reason = held
    presented = fingerprint_of(worker.presented_key) if worker.presented_key else None
    return {
        "name": worker.name,
        "host": worker.host,
        "port": worker.port,
        "user": worker.user,
        "key_path": worker.key_path,
        "use_agent": worker.use_agent,
        "pools": sorted(pools),
        "enabled": worker.enabled,
        "draining": worker.draining,
        "builtin": worker.builtin,
        "capacity": worker.capacity,
        "leases": leases,
        # Slots still held by steps that ended without their processes seen gone.
        "orphans": orphans,
        "orphan_reason": orphan_reason if orphans else "",
        "work_dir": worker.work_dir,
        "status": worker.status if worker.enabled else DISABLED,
        "health": worker.status,
        "reason": worker.reason,
        "checked_at": iso(worker.checked_at),
        "latency_ms": worker.latency_ms,
        "connect_ms": worker.connect_ms,
        "facts": _facts(worker.facts),
        "host_key": pinned,
        "presented_host_key": presented,
    }


def list_workers(store: Store, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    with store.read() as session:
        # Rows of the table, not ORM objects: ten thousand workers are read for every
        # console that connects, and the ORM would triple the cost.
        query = (select(Worker.__table__, HostKey.fingerprint.label("pinned"))
                 .outerjoin(HostKey, HostKey.worker_id == Worker.id).order_by(Worker.name))
        if names is not None:
            query = query.where(Worker.name.in_(list(names)))
        workers = session.connection().execute(query).all()
        ids = [w.id for w in workers]
        pools = _pool_names(session, ids if names is not None else None)
        leases = _leases(session, ids if names is not None else None)
        return [worker_public(w, pools.get(w.id, []), w.pinned, leases.get(w.id, (0, 0, "")))
                for w in workers]


def _worker(session: Session, name: str) -> Worker:
    worker = session.exec(select(Worker).where(Worker.name == name)).first()
    if worker is None:
        raise NotFound(f"No worker is named {name!r}.")
    return worker


def get_worker(store: Store, name: str) -> dict[str, Any]:
    with store.read() as session:
        worker = _worker(session, name)
        pools = _pool_names(session, [worker.id]).get(worker.id, [])
        held = _leases(session, [worker.id]).get(worker.id, (0, 0, ""))
        pinned = session.get(HostKey, worker.id)
        return worker_public(worker, pools, pinned.fingerprint if pinned else None, held)


def worker_history(store: Store, name: str, limit: int = 120) -> list[dict[str, Any]]:
    with store.read() as session:
        worker = _worker(session, name)
        rows = session.exec(
            select(HealthCheck)
            .where(HealthCheck.worker_id == worker.id)
            .order_by(HealthCheck.id.desc())
            .limit(limit)
        ).all()
        return [
            {
                "checked_at": iso(r.checked_at),
                "status": r.status,
                "reason": r.reason,
                "latency_ms": r.latency_ms,
                "connect_ms": r.connect_ms,
                "load1": r.load1,
                "disk_free_mb": r.disk_free_mb,
            }
            for r in reversed(rows)
        ]


# ---------------------------------------------------------------- pools


def _pool(session: Session, name: str) -> Pool:
    pool = session.exec(select(Pool).where(Pool.name == name)).first()
    if pool is None:
        raise NotFound(f"No pool is named {name!r}.")
    return pool


def _ensure_pools(session: Session, names: Iterable[str], actor: str) -> list[Pool]:
    pools = []
    for raw in names:
        name = validation.pool_name(raw)
        pool = session.exec(select(Pool).where(Pool.name == name)).first()
        if pool is None:
            pool = Pool(name=name)
            session.add(pool)
            session.flush()
            audit(session, actor, "pool.add", name, "created for a new worker")
        pools.append(pool)
    return pools


_FIGURES = """
SELECT p.name,
       COUNT(w.id) AS workers,
       COALESCE(SUM(w.enabled AND w.status = 'healthy'), 0) AS healthy,
       COALESCE(SUM(CASE WHEN w.enabled AND w.status = 'healthy' AND NOT w.draining
                         THEN w.capacity ELSE COALESCE(l.n, 0) END), 0) AS capacity,
       COALESCE(SUM(l.n), 0) AS leased,
       COALESCE(SUM(w.draining), 0) AS draining,
       p.id
FROM pool p
LEFT JOIN pool_member pm ON pm.pool_id = p.id
LEFT JOIN worker w ON w.id = pm.worker_id
LEFT JOIN (SELECT worker_id, COUNT(*) AS n FROM lease GROUP BY worker_id) l
       ON l.worker_id = w.id
{where}
GROUP BY p.id
"""
_ALL_FIGURES = text(_FIGURES.format(where=""))
_ONE_FIGURES = text(_FIGURES.format(where="WHERE p.name = :name"))


def pool_figures(store: Store, queued: Mapping[str, int] | None = None,
                 name: str | None = None) -> dict[str, dict[str, Any]]:
    """Every pool's slots now (or one pool's): {name: {capacity, leased, queued,
    utilization, ...}}.

    A pool's capacity is what its members can hold: each healthy, enabled worker that
    takes new leases counts its capacity; any other member (draining, disabled, gone
    unhealthy) counts the slots its running steps still hold. So `leased` never exceeds
    `capacity`, and no slot is shown taken by nothing.
    """
    queued = queued or {}
    with store.read() as session:
        connection = session.connection()
        rows = (connection.execute(_ALL_FIGURES) if name is None
                else connection.execute(_ONE_FIGURES, {"name": name})).all()
    return {
        pool: {"capacity": capacity, "leased": leased, "queued": queued.get(pool, 0),
               "utilization": round(leased / capacity, 3) if capacity else 0.0,
               "healthy_workers": healthy, "workers": workers, "draining_workers": draining,
               "pool_id": pool_id}
        for pool, workers, healthy, capacity, leased, draining, pool_id in rows
    }


def pool_public(pool: Pool, members: list[str], figure: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": pool.name,
        "description": pool.description,
        "default": pool.is_default,
        "members": members,
        **{k: v for k, v in figure.items() if k != "pool_id"},
    }


def list_pools(store: Store, queued: Mapping[str, int] | None = None,
               name: str | None = None) -> list[dict[str, Any]]:
    """Every pool (or the one named) with its members' names and its figures."""
    figures = pool_figures(store, queued, name)
    with store.read() as session:
        query = select(Pool).order_by(Pool.name)
        members_query = (select(PoolMember.pool_id, Worker.name)
                         .join(Worker, Worker.id == PoolMember.worker_id).order_by(Worker.name))
        if name is not None:
            query = query.where(Pool.name == name)
            members_query = members_query.join(Pool, Pool.id == PoolMember.pool_id).where(
                Pool.name == name)
        pools = session.exec(query).all()
        members: dict[int, list[str]] = defaultdict(list)
        for pool_id, member in session.exec(members_query):
            members[pool_id].append(member)
        return [pool_public(p, members.get(p.id, []), figures[p.name]) for p in pools]


def get_pool(store: Store, name: str, queued: Mapping[str, int] | None = None
             ) -> dict[str, Any]:
    found = list_pools(store, queued, name)
    if not found:
        raise NotFound(f"No pool is named {name!r}.")
    return found[0]


def add_pool(store: Store, name: str, description: str, actor: str) -> dict[str, Any]:
    name = validation.pool_name(name)
    description = validation.free_text(description, 500, one_line=True)
    with store.write() as session:
        if session.exec(select(Pool).where(Pool.name == name)).first():
            raise Conflict(f"A pool named {name!r} already exists.")
        session.add(Pool(name=name, description=description))
        audit(session, actor, "pool.add", name, description)
    return get_pool(store, name)


def describe_pool(store: Store, name: str, description: str, actor: str) -> dict[str, Any]:
    with store.write() as session:
        pool = _pool(session, name)
        pool.description = validation.free_text(description, 500, one_line=True)
        session.add(pool)
        audit(session, actor, "pool.describe", name, pool.description)
    return get_pool(store, name)


# ---------------------------------------------------------------- workers


def _validated(spec: WorkerCreate) -> WorkerCreate:
    return spec.model_copy(
        update={
            "name": validation.worker_name(spec.name),
            "host": validation.host(spec.host),
            "port": validation.port(spec.port),
            "user": validation.user(spec.user),
            "key_path": validation.key_file(spec.key_path),
            "capacity": validation.capacity(spec.capacity),
        }
    )


def _insert_worker(session: Session, spec: WorkerCreate, actor: str) -> Worker:
    worker = Worker(
        name=spec.name,
        host=spec.host,
        port=spec.port,
        user=spec.user,
        key_path=spec.key_path,
        use_agent=spec.use_agent,
        capacity=spec.capacity,
        trust_next_key=spec.trust_host_key,
    )
    if spec.work_dir:
        worker.work_dir = spec.work_dir
    session.add(worker)
    session.flush()
    pools = _ensure_pools(session, spec.pools or [DEFAULT_POOL], actor)
    for pool in pools:
        session.add(PoolMember(pool_id=pool.id, worker_id=worker.id))
    where = f"{spec.user + '@' if spec.user else ''}{spec.host}:{spec.port}"
    audit(
        session,
        actor,
        "worker.add",
        spec.name,
        f"{where} in {', '.join(p.name for p in pools)}"
        + ("; host key trusted on first connection" if spec.trust_host_key else ""),
    )
    return worker


def add_workers(store: Store, specs: list[WorkerCreate], actor: str) -> list[str]:
    """Register several workers at once: all of them, or none when one is refused."""
    checked = [_validated(s) for s in specs]
    seen: set[str] = set()
    for spec in checked:
        if spec.name in seen:
            raise Conflict(f"Worker {spec.name!r} is listed twice.")
        seen.add(spec.name)
    with store.write() as session:
        existing = session.exec(select(Worker.name).where(Worker.name.in_(list(seen)))).all()
        if existing:
            listed = ", ".join(sorted(existing)[:5])
            raise Conflict(
                f"A worker named {listed} already exists."
                if len(existing) == 1
                else f"{len(existing)} workers already exist ({listed}); nothing was imported."
            )
        for spec in checked:
            _insert_worker(session, spec, actor)
    return [s.name for s in checked]


def remove_worker(store: Store, name: str, actor: str) -> None:
    with store.write() as session:
        worker = _worker(session, name)
        if worker.builtin:
            raise InvalidInput(
                "The built-in worker cannot be removed; turn it off with "
                "`workdeck settings --builtin-worker off` instead."
            )
        held = _lease_counts(session, [worker.id]).get(worker.id, 0)
        if held:
            raise Conflict(
                f"Worker {name!r} still holds {held} slot{'s' if held != 1 else ''} (running "
                "or orphaned steps); drain it (`workdeck worker drain`) and remove it once "
                "they have ended.")
        session.exec(delete(PoolMember).where(PoolMember.worker_id == worker.id))
        session.exec(delete(HostKey).where(HostKey.worker_id == worker.id))
        session.exec(delete(HealthCheck).where(HealthCheck.worker_id == worker.id))
        session.delete(worker)
        audit(session, actor, "worker.remove", name)


def set_enabled(store: Store, name: str, enabled: bool, actor: str) -> dict[str, Any]:
    return _set_flag(store, name, "enabled", enabled, actor, "worker.enable", "worker.disable")


def set_draining(store: Store, name: str, draining: bool, actor: str) -> dict[str, Any]:
    """A draining worker finishes the steps it runs and takes no new ones."""
    return _set_flag(store, name, "draining", draining, actor, "worker.drain", "worker.undrain")


def _set_flag(store: Store, name: str, flag: str, value: bool, actor: str, on: str,
              off: str) -> dict[str, Any]:
    with store.write() as session:
        worker = _worker(session, name)
        if getattr(worker, flag) != value:
            setattr(worker, flag, value)
            session.add(worker)
            audit(session, actor, on if value else off, name)
    return get_worker(store, name)


def trust_host_key(store: Store, name: str, fingerprint: str | None, actor: str) -> dict[str, Any]:
    """Pin the key the worker presented last, after the operator saw its fingerprint."""
    with store.write() as session:
        worker = _worker(session, name)
        if worker.builtin:
            raise InvalidInput("The built-in worker runs locally and has no host key.")
        pinned = session.get(HostKey, worker.id)
        if worker.presented_key:
            presented = fingerprint_of(worker.presented_key)
            if not fingerprint:
                # Never "whatever it showed last": the operator names the key they checked.
                raise InvalidInput(
                    f"Say which key to trust: worker {name!r} presented {presented}; trust "
                    f"it with --fingerprint {presented} once you have checked it.")
            if fingerprint != presented:
                raise InvalidInput(
                    f"Worker {name!r} presented the key {presented}, not {fingerprint}; "
                    "nothing was trusted."
                )
            detail = (presented if pinned is None
                      else f"{pinned.fingerprint} replaced by {presented}")
            if pinned is None:
                pinned = HostKey(worker_id=worker.id, public_key="", fingerprint="")
            pinned.public_key = worker.presented_key
            pinned.fingerprint = presented
            pinned.trusted_at = utcnow()
            pinned.trusted_by = actor
            session.add(pinned)
            worker.presented_key = None
            worker.trust_next_key = False
            worker.reason = "host key trusted; waiting for the next check"
            session.add(worker)
            audit(session, actor, "worker.trust", name, detail)
        elif pinned is None or fingerprint not in (None, pinned.fingerprint):
            raise InvalidInput(
                f"Worker {name!r} has not presented an untrusted host key; run "
                f"`workdeck check --worker {name}` to fetch its key first."
            )
    return get_worker(store, name)


def worker_count(store: Store) -> int:
    with store.read() as session:
        return session.exec(select(func.count()).select_from(Worker)).one()


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def ensure_builtin(store: Store, actor: str) -> None:
    """Create the default pool, and the built-in worker unless it was switched off."""
    with store.write() as session:
        default = session.exec(select(Pool).where(Pool.is_default)).first()
        if default is None:
            default = session.exec(select(Pool).where(Pool.name == DEFAULT_POOL)).first()
            if default is None:
                default = Pool(
                    name=DEFAULT_POOL,
                    description="Where steps run when they name no pool",
                    is_default=True,
                )
                session.add(default)
                session.flush()
                audit(session, actor, "pool.add", DEFAULT_POOL, "the default pool")
        enabled = get_setting(session, "builtin_worker", None)
        if enabled is None:
            # On by default for a new data directory, as the seed's built-in worker is.
            enabled = True
            put_setting(session, "builtin_worker", True)
        builtin = session.exec(select(Worker).where(Worker.builtin)).first()
        if enabled and builtin is None:
            builtin = Worker(
                name=BUILTIN_WORKER,
                host="localhost",
                port=0,
                user=default_actor(),
                builtin=True,
                capacity=4,
            )
            session.add(builtin)
            session.flush()
            session.add(PoolMember(pool_id=default.id, worker_id=builtin.id))
            audit(session, actor, "worker.add", BUILTIN_WORKER, "the built-in worker")
        elif not enabled and builtin is not None:
            session.exec(delete(PoolMember).where(PoolMember.worker_id == builtin.id))
            session.exec(delete(HealthCheck).where(HealthCheck.worker_id == builtin.id))
            session.delete(builtin)
            audit(session, actor, "worker.remove", BUILTIN_WORKER, "the built-in worker turned off")


def set_builtin_worker(store: Store, enabled: bool, actor: str) -> None:
    with store.write() as session:
        if get_setting(session, "builtin_worker", True) != enabled:
            put_setting(session, "builtin_worker", enabled)
            audit(session, actor, "settings.update", "builtin_worker", "on" if enabled else "off")
    ensure_builtin(store, actor)


def list_audit(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    with store.read() as session:
        rows = session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)).all()
        return [
            {"at": iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
             "detail": r.detail}
            for r in rows
        ]
