"""Schedules; why a run was launched (a schedule, a rerun) and the run it runs again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Columns added in place (ALTER TABLE ADD COLUMN), on SQLite too: no table copied.
    op.add_column("run", sa.Column("cause", sa.String(), nullable=False, server_default=""))
    op.add_column("run", sa.Column("schedule", sa.String(), nullable=False,
                                   server_default=""))
    op.create_index("ix_run_schedule", "run", ["schedule"])
    op.add_column("run", sa.Column("rerun_of", sa.Integer(), nullable=True))
    op.create_index("ix_run_rerun_of", "run", ["rerun_of"])
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("runbook", sa.String(), nullable=False),
        sa.Column("environment", sa.String(), nullable=False),
        sa.Column("cron", sa.String(), nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("variables", sa.String(), nullable=False),
        sa.Column("secrets", sa.String(), nullable=False),
        sa.Column("person", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("overlap", sa.Boolean(), nullable=False),
        sa.Column("missed", sa.String(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_outcome", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_schedule_name", "schedule", ["name"], unique=True)
    op.create_index("ix_schedule_runbook", "schedule", ["runbook"])


def downgrade() -> None:
    raise NotImplementedError("Workdeck's schema only moves forward")
