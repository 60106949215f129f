"""Reports: per-execution task runtimes (the source of task_activity's p50/p95).

Revision ID: reports_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "reports_0001"
down_revision = "0001"
branch_labels = ("reports",)
depends_on = None


def upgrade() -> None:
    """Create ``reports_task_runs`` with indexes for the report's range and the join."""
    op.create_table(
        "reports_task_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("task_id", sa.String(155), nullable=False),
        sa.Column("name", sa.String(155), nullable=True),
        sa.Column("queue", sa.String(155), nullable=True),
        sa.Column("state", sa.String(50), nullable=True),
        sa.Column("runtime_s", sa.Float, nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reports_task_runs"),
    )
    op.create_index("ix_reports_task_runs_task_id", "reports_task_runs", ["task_id"])
    op.create_index("ix_reports_task_runs_finished_at", "reports_task_runs", ["finished_at"])


def downgrade() -> None:
    """Drop ``reports_task_runs``."""
    op.drop_table("reports_task_runs")
