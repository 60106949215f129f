"""Idempotency keys: one row per task execution key, with lease and stored result.

Revision ID: platform_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "platform_0001"
down_revision = "0001"
branch_labels = ("platform",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("result", sa.JSON),
        sa.PrimaryKeyConstraint("key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_updated_at", "idempotency_keys", ["updated_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
