"""Entity versions for the ordering guard on standard queues.

Revision ID: platform_0002
Revises: platform_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "platform_0002"
down_revision = "platform_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entity_versions",
        sa.Column("entity", sa.String(300), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("entity", name="pk_entity_versions"),
    )


def downgrade() -> None:
    op.drop_table("entity_versions")
