"""Pools in the store: their members, their figures (slots, leases, queue), changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from backend.errors import Conflict, NotFound
from backend.fleet import validation
from backend.fleet.audit import audit
from backend.fleet.provisioners import provisioners_public
from backend.store.db import Store
from backend.store.models import (
    Pool,
    PoolMember,
    Worker,
)


def _pool(session: Session, name: str) -> Pool:
    pool = session.exec(select(Pool).where(Pool.name == name)).first()
    if pool is None:
        raise NotFound(f"No pool is named {name!r}.")
    return pool


def ensure_pools(session: Session, names: Iterable[str], actor: str) -> list[Pool]:
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
       COALESCE(SUM(CASE WHEN w.enabled AND w.check_status = 'healthy' THEN 1 ELSE 0 END),
                0) AS healthy,
       -- (PostgreSQL sums a count as a decimal: the casts keep them whole numbers.)
       CAST(COALESCE(SUM(CASE WHEN w.enabled AND w.check_status = 'healthy'
                                   AND NOT w.draining
                              THEN w.capacity ELSE COALESCE(l.n, 0) END), 0) AS INTEGER)
           AS capacity,
       CAST(COALESCE(SUM(l.n), 0) AS INTEGER) AS leased,
       COALESCE(SUM(CASE WHEN w.draining THEN 1 ELSE 0 END), 0) AS draining,
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


def pool_public(name: str, description: str, default: bool, engine: str, members: list[str],
                figure: dict[str, Any], provisioner: dict[str, Any] | None
                ) -> dict[str, Any]:
    """A pool as the API shows it (wire.pools.Pool), for the store's reads and the usage
    sampler's alike."""
    return {"name": name, "description": description, "default": bool(default),
            "engine": engine, "members": members, "provisioner": provisioner,
            **{k: v for k, v in figure.items() if k != "pool_id"}}


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
        provisioners = provisioners_public(session)
        return [pool_public(p.name, p.description, p.default, p.engine, members.get(p.id, []),
                            figures[p.name], provisioners.get(p.id)) for p in pools]


def get_pool(store: Store, name: str, queued: Mapping[str, int] | None = None
             ) -> dict[str, Any]:
    found = list_pools(store, queued, name)
    if not found:
        raise NotFound(f"No pool is named {name!r}.")
    return found[0]


def add_pool(store: Store, name: str, description: str, actor: str, engine: str = ""
             ) -> dict[str, Any]:
    name = validation.pool_name(name)
    description = validation.free_text(description, 500, one_line=True)
    with store.write() as session:
        if session.exec(select(Pool).where(Pool.name == name)).first():
            raise Conflict(f"A pool named {name!r} already exists.")
        session.add(Pool(name=name, description=description, engine=engine))
        audit(session, actor, "pool.add", name,
              description + (f" (containers with {engine})" if engine else ""))
    return get_pool(store, name)


def describe_pool(store: Store, name: str, description: str | None, actor: str,
                  engine: str | None = None) -> dict[str, Any]:
    """Change what a pool is for, or the container engine its members use by default."""
    with store.write() as session:
        pool = _pool(session, name)
        if description is not None:
            pool.description = validation.free_text(description, 500, one_line=True)
            audit(session, actor, "pool.describe", name, pool.description)
        if engine is not None and engine != pool.engine:
            audit(session, actor, "pool.set", name,
                  f"engine {pool.engine or 'any'} to {engine or 'any'}")
            pool.engine = engine
        session.add(pool)
    return get_pool(store, name)
