"""entity_versions.task_id holds any task id Celery's result table holds (155 characters).

A task id of 65..155 characters with an ``entity`` header passed the message checks and then
failed the run on PostgreSQL ("value too long"), after the idempotency claim.

Revision ID: platform_0004
Revises: platform_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "platform_0004"
down_revision = "platform_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entity_versions") as batch:
        batch.alter_column("task_id", type_=sa.String(155), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("entity_versions") as batch:
        batch.alter_column("task_id", type_=sa.String(64), existing_nullable=False)
