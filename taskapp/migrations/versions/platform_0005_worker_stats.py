"""worker_stats: counters only a worker sees (heartbeat renewals, failures, idempotency waits).

Each worker adds to its row once per heartbeat tick (taskapp/workerstats.py); the metrics
exporter reads the table.

Revision ID: platform_0005
Revises: platform_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "platform_0005"
down_revision = "platform_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_stats",
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("renewals", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("waits", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker", name="pk_worker_stats"),
    )


def downgrade() -> None:
    op.drop_table("worker_stats")
