"""The step a rerun starts from (the steps before it are not run again); runs counted
by runbook, environment and status from an index (GET /metrics).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run", sa.Column("from_step", sa.Integer(), nullable=False,
                                   server_default="1"))
    op.create_index("ix_run_runbook_environment_status", "run",
                    ["runbook", "environment", "status"])


def downgrade() -> None:
    raise NotImplementedError("Workdeck's schema only moves forward")
