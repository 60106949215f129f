"""Sent emails are recorded in the platform's idempotency keys, on SQLite and PostgreSQL.

The claim/lease/fencing rules themselves are tested in tests/unit/test_idempotency.py; here:
what the email service makes of them, and the migration of the old email_sends ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, insert, inspect, select

from config.settings import DatabaseUrl
from taskapp import idempotency
from taskapp.db import alembic_config, engine
from taskapp.email import service
from taskapp.email.errors import SendInProgress
from taskapp.email.request import EmailRequest


def test_a_send_under_a_held_key_is_refused_as_in_progress(
    database_url: str, settings: Any
) -> None:
    eng = engine(database_url)
    # given another delivery holds the key k
    held_key = idempotency.key_for(service.TASK_NAME, "k")
    assert idempotency.claim(eng, held_key, service.TASK_NAME, 60).acquired
    # when the same key is sent, then it is a retryable "in progress", and nothing is sent
    request = EmailRequest.build("ann@example.com", "Hi", body="hi")
    with pytest.raises(SendInProgress, match="another delivery of 'k'"):
        service.send(
            request,
            idempotency_key="k",
            lease=60,
            settings=settings.model_copy(update={"database_url": DatabaseUrl(database_url)}),
            backend=NoBackend(),  # type: ignore[arg-type]
        )


class NoBackend:
    """A backend that fails the test if anything reaches it."""

    name, max_recipients = "none", None

    def send(self, composed: object) -> object:
        raise AssertionError("the email was sent")


LEGACY = Table(
    "email_sends",
    MetaData(),
    Column("idempotency_key", String(255), primary_key=True),
    Column("status", String(16)),
    Column("owner", String(36)),
    Column("claimed_at", DateTime()),
    Column("sent_at", DateTime()),
    Column("result", JSON()),
)


def test_migration_carries_sent_keys_over_and_back(blank_database_url: str) -> None:
    # given a database at the old ledger, with one sent and one in-flight email
    cfg = alembic_config(blank_database_url)
    command.upgrade(cfg, "email_0001")
    command.upgrade(cfg, "platform_0002")
    eng = engine(blank_database_url)
    claimed, sent = datetime(2026, 11, 30, 12, 0), datetime(2026, 11, 30, 12, 0, 2)
    with eng.begin() as conn:
        conn.execute(
            insert(LEGACY),
            [
                {
                    "idempotency_key": "receipt-1",
                    "status": "sent",
                    "owner": "a" * 32,
                    "claimed_at": claimed,
                    "sent_at": sent,
                    "result": {"message_id": "<m1@x>"},
                },
                {
                    "idempotency_key": "receipt-2",
                    "status": "sending",
                    "owner": "b" * 32,
                    "claimed_at": claimed,
                    "sent_at": None,
                    "result": None,
                },
            ],
        )
    # when every migration is applied
    command.upgrade(cfg, "heads")
    # then the sent key is done with its result, the in-flight one still blocks, the table is gone
    done = idempotency.claim(eng, "email.send:receipt-1", "email.send", 60)
    assert done.done
    assert done.result == {"message_id": "<m1@x>"}
    with eng.connect() as conn:
        moved = conn.execute(
            select(
                idempotency.idempotency_keys.c.state, idempotency.idempotency_keys.c.updated_at
            ).where(idempotency.idempotency_keys.c.key == "email.send:receipt-2")
        ).one()
    assert moved.state == "running"
    assert "email_sends" not in inspect(eng).get_table_names()
    # and downgrading restores the old ledger with both rows
    command.downgrade(cfg, "email_0001")
    with eng.connect() as conn:
        back = conn.execute(select(LEGACY.c.idempotency_key, LEGACY.c.status, LEGACY.c.result))
        assert sorted(back) == [
            ("receipt-1", "sent", {"message_id": "<m1@x>"}),
            ("receipt-2", "sending", None),
        ]
