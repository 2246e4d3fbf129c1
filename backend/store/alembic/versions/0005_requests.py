"""A run's log marked complete; requests for the node that executes a run; each node's
lease; the queue of steps waiting for a slot, shared by the nodes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Columns added in place (ALTER TABLE ADD COLUMN), on SQLite too: no table copied.
    op.add_column("run", sa.Column("log_closed", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    # A finished run's log was complete when it finished (one server wrote it).
    op.execute("UPDATE run SET log_closed = (finished_at IS NOT NULL)")
    op.add_column("node", sa.Column("lease_s", sa.Float(), nullable=False,
                                    server_default="15"))
    op.create_table(
        "run_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("person", sa.String(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_request_run_id", "run_request", ["run_id"])
    op.create_table(
        "step_wait",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(), nullable=False),
        sa.Column("pool", sa.String(), nullable=False),
        sa.Column("worker", sa.String(), nullable=False),
        sa.Column("avoid", sa.String(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_step_wait_node", "step_wait", ["node"])
    op.create_index("ix_step_wait_run_id", "step_wait", ["run_id"])


def downgrade() -> None:
    raise NotImplementedError("Workdeck's schema only moves forward")
