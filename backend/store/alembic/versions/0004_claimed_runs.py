"""Runs claimed by the node that executes them; nodes found lost and taken over.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The runs already stored were executed by the one server there was: "" (nobody
    # now), which a server starting treats as its own.
    # Columns added in place (ALTER TABLE ADD COLUMN), on SQLite too: no table copied.
    op.add_column("run", sa.Column("node", sa.String(), nullable=False, server_default=""))
    op.create_index("ix_run_node", "run", ["node"])
    op.add_column("node", sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("node", sa.Column("taken_over_by", sa.String(), nullable=False,
                                    server_default=""))


def downgrade() -> None:
    raise NotImplementedError("Workdeck's schema only moves forward")
