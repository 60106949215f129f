"""Idempotency keys: the lowest attempt still allowed to claim the key.

A failed attempt that published its retry raises it, so a second delivery of the failed attempt
is superseded instead of running again and starting a second retry chain (taskapp/idempotency.py).
Existing rows get 0: every attempt may claim them, as before.

Revision ID: platform_0006
Revises: platform_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "platform_0006"
down_revision = "platform_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("attempt")
