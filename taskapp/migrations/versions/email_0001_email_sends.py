"""Email: the email_sends ledger (one row per idempotency key; a key sent once is never resent).

Revision ID: email_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0001"
down_revision = "0001"
branch_labels = ("email",)
depends_on = None


def upgrade() -> None:
    """Create email_sends (the ledger until email_0002 moved it into idempotency_keys)."""
    op.create_table(
        "email_sends",
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(36), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("idempotency_key", name="pk_email_sends"),
    )
    op.create_index("ix_email_sends_sent_at", "email_sends", ["sent_at"])


def downgrade() -> None:
    """Drop email_sends."""
    op.drop_table("email_sends")
