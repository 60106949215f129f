"""Email: move the email_sends ledger into the platform's idempotency_keys, then drop it.

Sent keys are carried over (``email.send:<key>``, done, with their result) so an email sent
before the upgrade is still never sent again; a claim still "sending" keeps blocking duplicates
for an hour.

Revision ID: email_0002
Revises: email_0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "email_0002"
down_revision = "email_0001"
branch_labels = None
depends_on = "platform_0003"

PREFIX = "email.send:"
SENDING_LEASE = 3600.0

email_sends = sa.table(
    "email_sends",
    sa.column("idempotency_key", sa.String),
    sa.column("status", sa.String),
    sa.column("owner", sa.String),
    sa.column("claimed_at", sa.DateTime),
    sa.column("sent_at", sa.DateTime),
    sa.column("result", sa.JSON),
)
idempotency_keys = sa.table(
    "idempotency_keys",
    sa.column("key", sa.String),
    sa.column("task_name", sa.String),
    sa.column("state", sa.String),
    sa.column("lease_until", sa.Float),
    sa.column("updated_at", sa.Float),
    sa.column("result", sa.JSON),
    sa.column("owner", sa.String),
)


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()  # the ledger stored naive UTC


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def upgrade() -> None:
    conn = op.get_bind()
    rows = [
        {
            "key": PREFIX + row.idempotency_key,
            "task_name": "email.send",
            "state": "done" if row.status == "sent" else "running",
            "lease_until": _epoch(row.claimed_at) + SENDING_LEASE,
            "updated_at": _epoch(row.sent_at or row.claimed_at),
            "result": row.result,
            "owner": row.owner[:32],
        }
        for row in conn.execute(sa.select(email_sends))
    ]
    if rows:
        op.bulk_insert(idempotency_keys, rows)
    op.drop_table("email_sends")


def downgrade() -> None:
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
    conn = op.get_bind()
    moved = conn.execute(
        sa.select(idempotency_keys).where(idempotency_keys.c.key.startswith(PREFIX))
    ).all()
    if moved:
        op.bulk_insert(
            email_sends,
            [
                {
                    "idempotency_key": row.key.removeprefix(PREFIX),
                    "status": "sent" if row.state == "done" else "sending",
                    "owner": row.owner or "migrated",
                    "claimed_at": _utc(row.updated_at),
                    "sent_at": _utc(row.updated_at) if row.state == "done" else None,
                    "result": row.result,
                }
                for row in moved
            ],
        )
        conn.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.key.startswith(PREFIX)))
