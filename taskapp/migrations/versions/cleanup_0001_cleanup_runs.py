"""Cleanup: the cleanup_runs table (one row per real run, with per-rule counts).

Revision ID: cleanup_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "cleanup_0001"
down_revision = "0001"
branch_labels = ("cleanup",)
depends_on = None


def upgrade() -> None:
    """Create cleanup_runs."""
    op.create_table(
        "cleanup_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rules", sa.JSON, nullable=True),
        sa.Column("results", sa.JSON, nullable=True),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cleanup_runs"),
    )
    op.create_index("ix_cleanup_runs_started_at", "cleanup_runs", ["started_at"])


def downgrade() -> None:
    """Drop cleanup_runs."""
    op.drop_table("cleanup_runs")
