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
    with op.batch_alter_table("run") as table:
        table.add_column(sa.Column("node", sa.String(), nullable=False, server_default=""))
        table.create_index("ix_run_node", ["node"])
    with op.batch_alter_table("node") as table:
        table.add_column(sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("taken_over_by", sa.String(), nullable=False,
                                   server_default=""))


def downgrade() -> None:
    raise NotImplementedError("Workdeck's schema only moves forward")
