"""Workers in the store: the changes users make, validated and audited, and the built-in worker."""

from __future__ import annotations

import getpass
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import case, delete, func
from sqlmodel import Session, select

from backend.errors import Conflict, InvalidInput, NotFound
from backend.fleet import validation
from backend.fleet.audit import audit, iso
from backend.fleet.pools import ensure_pools
from backend.fleet.settings import get_setting, put_setting
from backend.store.db import Store
from backend.store.models import (
    BUILTIN_WORKER,
    DEFAULT_POOL,
    DISABLED,
    HealthCheck,
    HostKey,
    Lease,
    Pool,
    PoolMember,
    Worker,
    utcnow,
)
from backend.transport.hostkeys import fingerprint_of
from wire.workers import WorkerCreate

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
                   func.sum(case((Lease.orphan != "", 1), else_=0)), func.max(Lease.orphan)
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
    leased, orphans, orphan_reason = held
    presented = fingerprint_of(worker.presented_host_key) if worker.presented_host_key else None
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
        "leased": leased,
        # Slots still held by steps that ended without their processes seen gone.
        "orphans": orphans,
        "orphan_reason": orphan_reason if orphans else "",
        "work_dir": worker.work_dir,
        "status": worker.check_status if worker.enabled else DISABLED,
        "check_status": worker.check_status,
        "reason": worker.reason,
        "checked_at": iso(worker.checked_at),
        "latency_ms": worker.latency_ms,
        "connect_ms": worker.connect_ms,
        "facts": _facts(worker.facts),
        "host_key": pinned,
        "presented_host_key": presented,
        "engine": worker.engine,
        "dynamic": worker.dynamic,
        # The names of one release ago, for scripts (README, "Changed").
        "leases": leased,
        "health": worker.check_status,
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


# ---------------------------------------------------------------- workers


def _validated(spec: WorkerCreate) -> WorkerCreate:
    if spec.name.strip() == BUILTIN_WORKER:
        raise Conflict(f"{BUILTIN_WORKER!r} is the built-in worker's name: give this worker "
                       "another.")
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
        trust_host_key=spec.trust_host_key,
        engine=spec.engine,
    )
    if spec.work_dir:
        worker.work_dir = spec.work_dir
    session.add(worker)
    session.flush()
    pools = ensure_pools(session, spec.pools or [DEFAULT_POOL], actor)
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


def remove_worker(store: Store, name: str, actor: str, why: str = "") -> None:
    with store.write() as session:
        worker = _worker(session, name)
        if worker.builtin:
            raise InvalidInput(
                "The built-in worker cannot be removed; turn it off with "
                "`workdeck settings --builtin-worker off` instead."
            )
        if worker.dynamic and not worker.draining:
            raise Conflict(
                f"Worker {name!r} was made by its pool's provisioner, which destroys it: "
                f"drain it (`workdeck worker drain {name}`) and it is destroyed once idle; "
                "remove a drained one by hand only when the provisioner cannot destroy it.")
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
        audit(session, actor, "worker.remove", name, why)


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


def update_worker(store: Store, name: str, actor: str, *, capacity: int | None = None,
                  engine: str | None = None) -> dict[str, Any]:
    """Change a worker's capacity or container engine; each change is audited."""
    changes = []
    with store.write() as session:
        worker = _worker(session, name)
        if capacity is not None and capacity != worker.capacity:
            changes.append(f"capacity {worker.capacity} to {validation.capacity(capacity)}")
            worker.capacity = capacity
        if engine is not None and engine != worker.engine:
            changes.append(f"engine {worker.engine or 'any'} to {engine or 'any'}")
            worker.engine = engine
        if changes:
            session.add(worker)
            audit(session, actor, "worker.set", name, "; ".join(changes))
    return get_worker(store, name)


def trust_host_key(store: Store, name: str, fingerprint: str | None, actor: str) -> dict[str, Any]:
    """Pin the key the worker presented last, after the operator saw its fingerprint."""
    with store.write() as session:
        worker = _worker(session, name)
        if worker.builtin:
            raise InvalidInput("The built-in worker runs locally and has no host key.")
        pinned = session.get(HostKey, worker.id)
        if worker.presented_host_key:
            presented = fingerprint_of(worker.presented_host_key)
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
            pinned.public_key = worker.presented_host_key
            pinned.fingerprint = presented
            pinned.trusted_at = utcnow()
            pinned.trusted_by = actor
            session.add(pinned)
            worker.presented_host_key = None
            worker.trust_host_key = False
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
        default = session.exec(select(Pool).where(Pool.default)).first()
        if default is None:
            default = session.exec(select(Pool).where(Pool.name == DEFAULT_POOL)).first()
            if default is None:
                default = Pool(
                    name=DEFAULT_POOL,
                    description="Where steps run when they name no pool",
                    default=True,
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
        if enabled and builtin is None and session.exec(
                select(Worker.id).where(Worker.name == BUILTIN_WORKER)).first() is not None:
            raise Conflict(f"A worker added by hand is named {BUILTIN_WORKER!r}: rename or "
                           "remove it before turning the built-in worker on.")
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
