"""Runbooks in the store: saved whole (one or several in one transaction), read, listed,
removed. The file format itself is wire.runbook."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from backend.errors import NotFound
from backend.fleet import audit, iso
from backend.store.db import Store
from backend.store.models import Runbook as RunbookRow
from backend.store.models import utcnow
from wire.runbook import RunbookDef


def save(store: Store, runbook: RunbookDef, actor: str) -> dict[str, Any]:
    """Create or replace the runbook of this name."""
    return save_all(store, [runbook], actor)[0]


def save_all(store: Store, books: list[RunbookDef], actor: str) -> list[dict[str, Any]]:
    """Create or replace these runbooks, all in one transaction: all or none."""
    with store.write() as session:
        for runbook in books:
            row = session.exec(select(RunbookRow).where(RunbookRow.name == runbook.name)
                               ).first()
            action = "runbook.update" if row else "runbook.add"
            if row is None:
                row = RunbookRow(name=runbook.name, definition="")
            row.description = runbook.description
            row.definition = runbook.model_dump_json()
            row.updated_at = utcnow()
            session.add(row)
            audit(session, actor, action, runbook.name, f"{len(runbook.steps)} steps")
    return [public(get(store, runbook.name)) for runbook in books]


def get(store: Store, name: str) -> RunbookDef:
    with store.read() as session:
        row = session.exec(select(RunbookRow).where(RunbookRow.name == name)).first()
    if row is None:
        raise NotFound(f"No runbook is named {name!r}.")
    return RunbookDef.model_validate_json(row.definition)


def public(runbook: RunbookDef) -> dict[str, Any]:
    return runbook.model_dump()


def list_all(store: Store) -> list[dict[str, Any]]:
    with store.read() as session:
        rows = session.exec(select(RunbookRow).order_by(RunbookRow.name)).all()
    result = []
    for row in rows:
        definition = RunbookDef.model_validate_json(row.definition)
        result.append({"name": row.name, "description": row.description,
                       "steps": len(definition.steps),
                       "variables": [v.name for v in definition.variables],
                       "updated_at": iso(row.updated_at)})
    return result


def remove(store: Store, name: str, actor: str) -> None:
    with store.write() as session:
        row = session.exec(select(RunbookRow).where(RunbookRow.name == name)).first()
        if row is None:
            raise NotFound(f"No runbook is named {name!r}.")
        session.delete(row)
        audit(session, actor, "runbook.remove", name)
