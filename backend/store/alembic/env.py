"""Alembic's environment: the server hands it a connection (backend/store/schema.py).

Developers write a new revision with `scripts/new-migration "what it adds"`, which
compares the models with a fresh database and writes the steps to review.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from backend.store import models  # noqa: F401 - registers the tables on SQLModel.metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite changes a column by copying its table: Alembic's batch mode does that.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
context.run_migrations()
