"""email.send claims its key under the worker's run token, so the heartbeat renews it (issue 15)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import Settings
from taskapp.db import engine
from taskapp.email.tasks import SEND_LEASE, send_email
from taskapp.idempotency import idempotency_keys
from tests.email.smtp_server import TestSMTPServer

pytestmark = pytest.mark.integration


def test_a_send_in_a_worker_holds_a_heartbeat_lease_not_the_whole_send_lease(
    worker: Any, smtp_server: TestSMTPServer, settings: Settings
) -> None:
    # when the session worker sends an email
    result = send_email.delay("ann@example.com", "Lease", body="hi")
    result.get(timeout=30, interval=0.05)
    finished = time.time()
    # then its claim was held under a run token with a lease of three heartbeat intervals
    # (renewed while it ran), so a crashed send would be redone that soon, not after 60 s
    with engine().connect() as conn:
        row = conn.execute(
            select(idempotency_keys).where(idempotency_keys.c.key == f"email.send:{result.id}")
        ).one()
    assert row.state == "done"
    assert row.owner
    assert 3 * settings.heartbeat_interval + 1 < SEND_LEASE  # else the check below is void
    assert row.lease_until <= finished + 3 * settings.heartbeat_interval + 1
