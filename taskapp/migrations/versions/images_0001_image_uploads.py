"""images: the image_uploads table (status and result of images.process_upload).

Revision ID: images_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "images_0001"
down_revision = "0001"
branch_labels = ("images",)
depends_on = None


def upgrade() -> None:
    """Create image_uploads, one row per uploaded S3 key."""
    op.create_table(
        "image_uploads",
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_id", sa.String(64)),
        sa.Column("manifest", sa.JSON()),
        sa.Column("analysis", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_image_uploads"),
    )
    op.create_index("ix_image_uploads_status", "image_uploads", ["status"])


def downgrade() -> None:
    """Drop image_uploads."""
    op.drop_index("ix_image_uploads_status", table_name="image_uploads")
    op.drop_table("image_uploads")
