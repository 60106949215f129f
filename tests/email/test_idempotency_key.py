"""One idempotency-key resolver: email.send and every other task pick the same key for a message.

A message can carry the key twice: as the ``idempotency_key`` header
(``apply_async(idempotency_key=...)``) and as the ``idempotency_key`` keyword argument. Every
task's claim (``TaskappTask.idempotency_key``) and email.send, which claims its own key, must
agree on which one wins: the header.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from taskapp.db import engine
from taskapp.email.tasks import send_email
from taskapp.idempotency import idempotency_keys
from tests.email.smtp_server import TestSMTPServer

pytestmark = pytest.mark.integration


def test_header_and_argument_resolve_to_the_same_key_for_every_task(
    worker: Any, smtp_server: TestSMTPServer
) -> None:
    # given messages that carry one key as a header and different keys as the argument
    header = f"order-{uuid.uuid4().hex}:receipt"
    arguments = [f"{header}:argument-{n}" for n in range(2)]
    # and the key the task base class claims for such a message
    send_email.push_request(id=str(uuid.uuid4()), idempotency_key=header)
    try:
        claimed = send_email.idempotency_key({"idempotency_key": arguments[0]})
    finally:
        send_email.pop_request()
    # when email.send runs both
    for argument in arguments:
        result = send_email.apply_async(
            ("ann@example.com", "Receipt"),
            {"body": "hi", "idempotency_key": argument},
            idempotency_key=header,
        )
        assert result.get(timeout=30, interval=0.05, propagate=False)["message_id"]
    # then email.send claimed the key the base class would have: one email, under the header
    assert claimed == f"email.send:{header}"
    assert len(smtp_server.received) == 1
    with engine().connect() as conn:
        stored = conn.execute(
            select(idempotency_keys.c.key).where(idempotency_keys.c.key.like(f"%{header}%"))
        ).scalars()
        assert list(stored) == [claimed]
