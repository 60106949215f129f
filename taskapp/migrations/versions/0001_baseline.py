"""Baseline: the revision every family's migration branch starts from.

Revision ID: 0001
Revises:
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: Celery creates its own result tables; families add theirs on top."""


def downgrade() -> None:
    """Nothing to undo."""
