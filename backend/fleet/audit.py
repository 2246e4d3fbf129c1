"""What changed in the fleet, who changed it, when: the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from backend.fleet import validation
from backend.store.db import Store
from backend.store.models import AuditEvent, aware


def iso(value: datetime | None) -> str | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return None if value is None else aware(value).isoformat()


def audit(session: Session, actor: str, action: str, target: str, detail: str = "") -> None:
    # Everything here may have come from outside (a name, a note, an error from a worker).
    session.add(AuditEvent(actor=validation.free_text(actor, 100, one_line=True),
                           action=action, target=validation.free_text(target, 300, one_line=True),
                           detail=validation.free_text(detail, 2000, one_line=True)))


def list_audit(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    with store.read() as session:
        rows = session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)).all()
        return [
            {"at": iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
             "detail": r.detail}
            for r in rows
        ]
