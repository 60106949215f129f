"""The sent-email ledger on SQLite and PostgreSQL: once sent, a key is never sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from taskapp.db import engine
from taskapp.email.errors import DeliveryRejected, SendInProgress
from taskapp.email.ledger import SENDING, SENT, claim, email_sends


def rows(url: str) -> list[tuple[str, str]]:
    with engine(url).connect() as conn:
        return [(r.idempotency_key, r.status) for r in conn.execute(select(email_sends))]


def test_a_recorded_send_is_returned_not_repeated(database_url: str) -> None:
    eng = engine(database_url)
    # given a send recorded under key k
    with claim(eng, "k", lease=60) as first:
        assert not first.already_sent
        first.result = {"message_id": "<m@x>"}
    # when the key is claimed again
    with claim(eng, "k", lease=60) as again:
        # then the stored result comes back and nothing is to be sent
        assert again.already_sent and again.result == {"message_id": "<m@x>"}
    assert rows(database_url) == [("k", SENT)]


def test_a_live_claim_blocks_a_second_delivery(database_url: str) -> None:
    eng = engine(database_url)
    with claim(eng, "k", lease=60) as first:
        with pytest.raises(SendInProgress), claim(eng, "k", lease=60):
            pass
        first.result = {"ok": True}
    assert rows(database_url) == [("k", SENT)]


def test_an_expired_claim_is_taken_over(database_url: str) -> None:
    eng = engine(database_url)
    # given a claim left by a worker that died mid-send five minutes ago
    dead = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    with eng.begin() as conn:
        conn.execute(
            insert(email_sends).values(
                idempotency_key="k", status=SENDING, owner="dead-worker", claimed_at=dead
            )
        )
    # when another delivery claims the key, it takes over and sends
    with claim(eng, "k", lease=60) as taken:
        assert not taken.already_sent
        taken.result = {"ok": True}
    # then the send is recorded under the new owner
    assert rows(database_url) == [("k", SENT)]


def test_a_failed_send_releases_its_claim(database_url: str) -> None:
    eng = engine(database_url)
    with pytest.raises(DeliveryRejected), claim(eng, "k", lease=60):
        raise DeliveryRejected("smtp: 550")
    assert rows(database_url) == []
    with claim(eng, "k", lease=60) as retry:
        assert not retry.already_sent
