"""Idempotency keys on SQLite and PostgreSQL: claim, lease, completion, takeover after a crash."""

from __future__ import annotations

import time

from taskapp import idempotency
from taskapp.db import engine


def test_first_claim_runs_and_a_finished_key_returns_its_result(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "k1", "email.send", 60).acquired
    idempotency.complete(eng, "k1", {"message_id": "abc"})
    again = idempotency.claim(eng, "k1", "email.send", 60)
    assert not again.acquired and again.done and again.result == {"message_id": "abc"}


def test_live_lease_makes_a_duplicate_wait(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "k2", "t", 60).acquired
    busy = idempotency.claim(eng, "k2", "t", 60)
    assert not busy.acquired and not busy.done and 55 < busy.wait_seconds <= 60


def test_lease_of_a_crashed_worker_expires_and_is_taken_over(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "k3", "t", 0.2).acquired  # the "crashed" holder
    time.sleep(0.3)
    assert idempotency.claim(eng, "k3", "t", 60).acquired
    assert not idempotency.claim(eng, "k3", "t", 60).acquired  # and only one taker


def test_release_after_failure_lets_a_retry_claim(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "k4", "t", 60).acquired
    idempotency.release(eng, "k4")
    assert idempotency.claim(eng, "k4", "t", 60).acquired


def test_expire_removes_only_old_finished_keys(database_url: str) -> None:
    eng = engine(database_url)
    for key in ("old", "running"):
        idempotency.claim(eng, key, "t", 60)
    idempotency.complete(eng, "old", 1)
    time.sleep(0.2)
    assert idempotency.expire(eng, older_than_seconds=0.1) == 1
    assert idempotency.claim(eng, "running", "t", 60).wait_seconds > 0


def test_entity_versions_only_move_forward(database_url: str) -> None:
    from taskapp.ordering import advance

    eng = engine(database_url)
    assert advance(eng, "customer:1", 5, "t5")  # first version seen
    assert advance(eng, "customer:1", 7, "t7")  # newer
    assert not advance(eng, "customer:1", 6, "t6")  # a late, older update is stale
    assert advance(eng, "customer:1", 7, "t7")  # the same task again (a retry) may run
    assert not advance(eng, "customer:1", 7, "other")  # another task at that version may not
    assert advance(eng, "customer:2", 1, "t1")  # entities are independent
