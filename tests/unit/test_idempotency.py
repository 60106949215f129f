"""Idempotency keys on SQLite and PostgreSQL: claim, lease, completion, takeover after a crash."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from taskapp import idempotency
from taskapp.db import engine


def test_first_claim_runs_and_a_finished_key_returns_its_result(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "k1", "email.send", 60).acquired
    idempotency.complete(eng, "k1", {"message_id": "abc"})
    again = idempotency.claim(eng, "k1", "email.send", 60)
    assert not again.acquired
    assert again.done
    assert again.result == {"message_id": "abc"}


def test_live_lease_makes_a_duplicate_wait(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "k2", "t", 60).acquired
    busy = idempotency.claim(eng, "k2", "t", 60)
    assert not busy.acquired
    assert not busy.done
    assert 55 < busy.wait_seconds <= 60


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


def test_a_taken_over_holder_cannot_complete_or_release_its_successors_claim(
    database_url: str,
) -> None:
    eng = engine(database_url)
    # given a slow holder whose lease ran out, and a successor that took the key over
    slow = idempotency.claim(eng, "k5", "t", 0.2)
    time.sleep(0.3)
    successor = idempotency.claim(eng, "k5", "t", 60)
    assert slow.acquired
    assert successor.acquired
    assert slow.owner != successor.owner
    # when the slow holder fails (release) or finishes (complete) late
    idempotency.release(eng, "k5", slow.owner)
    assert not idempotency.complete(eng, "k5", "late", slow.owner)
    # then the successor's claim is intact: a third delivery still waits, and it completes
    assert idempotency.claim(eng, "k5", "t", 60).wait_seconds > 0
    assert idempotency.complete(eng, "k5", "ours", successor.owner)
    assert idempotency.claim(eng, "k5", "t", 60).result == "ours"


def test_held_runs_the_block_once_and_then_returns_the_stored_result(database_url: str) -> None:
    eng = engine(database_url)
    with idempotency.held(eng, "k6", "t", 60) as first:
        assert not first.done
        first.result = {"sent": 1}
    with idempotency.held(eng, "k6", "t", 60) as again:
        assert again.done
        assert again.result == {"sent": 1}


def test_held_refuses_a_live_lease_and_releases_on_error_or_no_result(database_url: str) -> None:
    eng = engine(database_url)
    # given a block holding k7, a second one for k7 is refused while it runs
    with (
        idempotency.held(eng, "k7", "t", 60),
        pytest.raises(idempotency.KeyBusy, match="'k7' is held"),
        idempotency.held(eng, "k7", "t", 60),
    ):
        pass  # pragma: no cover - not entered
    # leaving the block without a result released the claim: so does an exception
    with pytest.raises(RuntimeError), idempotency.held(eng, "k7", "t", 60):
        raise RuntimeError("provider down")
    assert idempotency.claim(eng, "k7", "t", 60).acquired


def test_entity_versions_only_move_forward(database_url: str) -> None:
    from taskapp.ordering import advance

    eng = engine(database_url)
    assert advance(eng, "customer:1", 5, "t5")  # first version seen
    assert advance(eng, "customer:1", 7, "t7")  # newer
    assert not advance(eng, "customer:1", 6, "t6")  # a late, older update is stale
    assert advance(eng, "customer:1", 7, "t7")  # the same task again (a retry) may run
    assert not advance(eng, "customer:1", 7, "other")  # another task at that version may not
    assert advance(eng, "customer:2", 1, "t1")  # entities are independent
    # and any task id a message may carry (the shape check allows 155 characters) is stored
    assert advance(eng, "e" * 300, 2**63 - 1, "i" * 155)


# The stored key is "<task name>:<key>" in a String(300) column: PostgreSQL refuses a longer
# one with DataError (a crash), SQLite stores it; both must refuse it before the database.
@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("x" * 299, "299 characters; t takes 1 to 298"),  # "t:" + 299 = 301 stored
        ("a\x00b", "U+0000"),
        ("a\tb", "U+0009"),
        ("line\nbreak", "U+000A"),
        ("a\u2028b", "U+2028"),
        ("\x1b[31mred", "U+001B"),
        ("", "empty"),
    ],
)
def test_a_bad_key_is_a_permanent_error_naming_the_field_before_the_database(
    database_url: str, key: str, reason: str
) -> None:
    from taskapp.errors import PermanentError

    eng = engine(database_url)
    # when a key that is too long or not printable is turned into a stored key
    with pytest.raises(idempotency.InvalidIdempotencyKey) as caught:
        idempotency.claim(eng, idempotency.key_for("t", key), "t", 60)
    # then it is a permanent error saying which field and what is wrong
    assert isinstance(caught.value, PermanentError)
    assert str(caught.value).startswith("idempotency_key: ")
    assert reason in str(caught.value)
    # and nothing reached the table
    with eng.connect() as conn:
        rows = conn.execute(idempotency.idempotency_keys.select()).all()
    assert rows == []


def test_the_longest_key_that_fits_is_stored_on_both_databases(database_url: str) -> None:
    eng = engine(database_url)
    # given a key exactly as long as the column allows after "<task name>:"
    longest = "é" * (idempotency.MAX_STORED_KEY - len("email.send:"))
    stored = idempotency.key_for("email.send", longest)
    # then it claims and completes like any other key
    assert idempotency.claim(eng, stored, "email.send", 60).acquired
    assert idempotency.complete(eng, stored, {"ok": 1})
    assert idempotency.claim(eng, stored, "email.send", 60).result == {"ok": 1}


def test_a_stored_key_over_the_column_is_refused_by_claim_itself(database_url: str) -> None:
    # given code that builds a stored key without key_for
    with pytest.raises(idempotency.InvalidIdempotencyKey, match="^idempotency_key: "):
        idempotency.claim(engine(database_url), "t:" + "y" * 299, "t", 60)


def test_a_bad_key_is_also_a_value_error_so_message_checks_treat_it_as_malformed() -> None:
    # taskapp.sqs.worker.already_done catches ValueError while it reads a pointer's key
    with pytest.raises(ValueError, match="idempotency_key: 400 characters"):
        idempotency.key_for("t", "x" * 400)


@pytest.mark.integration
def test_a_task_with_an_over_long_key_fails_as_permanent_not_crash(
    worker: Any, sqs: Any, settings: Any
) -> None:
    from taskapp.sqs.deadletter import read_reason
    from tests.support.queues import drain, queue_url
    from tests.support.waiting import wait_for
    from tests.tasks import effect_times, record

    tag = f"longkey-{uuid.uuid4().hex[:8]}"
    # when a task is sent with a caller key the idempotency table cannot hold
    result = record.apply_async((tag,), idempotency_key="k" * 400)
    error = result.get(timeout=30, interval=0.05, propagate=False)
    # then it fails with the field named, before running, and is dead-lettered as permanent
    assert result.status == "FAILURE"
    assert isinstance(error, idempotency.InvalidIdempotencyKey), error
    assert str(error).startswith("idempotency_key: 400 characters")
    assert effect_times(tag) == []
    url = queue_url(sqs, settings, "default-dlq")
    mine: list[Any] = []

    def dead_lettered() -> list[Any]:
        for message in drain(sqs, url, wait=1):
            letter = read_reason(message.get("MessageAttributes", {}))
            if letter is not None and letter.task_id == result.id:
                mine.append(letter)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return mine

    wait_for(dead_lettered, "the task's dead letter", timeout=30, interval=0)
    assert [(letter.reason, letter.error_type) for letter in mine] == [
        ("permanent", "InvalidIdempotencyKey")
    ]


def test_a_failed_attempt_that_handed_on_to_its_retry_cannot_run_again(database_url: str) -> None:
    eng = engine(database_url)
    # given attempt 0 failed and published its retry (attempt 1)
    first = idempotency.claim(eng, "k6", "t", 60, attempt=0)
    idempotency.release(eng, "k6", first.owner, next_attempt=1)
    # then a second delivery of attempt 0 is superseded, not run and not made to wait
    again = idempotency.claim(eng, "k6", "t", 60, attempt=0)
    assert (again.acquired, again.done, again.superseded) == (False, False, True)
    # and the retry claims the key; while it runs, attempt 0 is still superseded
    assert idempotency.claim(eng, "k6", "t", 60, attempt=1).acquired
    assert idempotency.claim(eng, "k6", "t", 60, attempt=0).superseded


def test_a_retry_that_was_never_sent_gives_the_key_back_to_its_attempt(database_url: str) -> None:
    eng = engine(database_url)
    # given attempt 2 failed and handed on to attempt 3, whose publish then failed
    held = idempotency.claim(eng, "k7", "t", 60, attempt=2)
    idempotency.release(eng, "k7", held.owner, next_attempt=3)
    idempotency.reopen(eng, "k7", 2)
    # then a redelivery (or a redrive) of attempt 2 runs, and older attempts stay superseded
    assert idempotency.claim(eng, "k7", "t", 60, attempt=1).superseded
    assert idempotency.claim(eng, "k7", "t", 60, attempt=2).acquired


def test_a_lost_run_keeps_the_keys_attempt_floor(database_url: str) -> None:
    eng = engine(database_url)
    held = idempotency.claim(eng, "k8", "t", 60, owner="m" * 32, attempt=1)
    assert held.acquired
    assert idempotency.release_runs(eng, {"m" * 32}) == 1
    assert idempotency.claim(eng, "k8", "t", 60, attempt=0).superseded
    assert idempotency.claim(eng, "k8", "t", 60, attempt=1).acquired


def test_held_records_the_work_once_the_database_answers_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    eng = engine(database_url)
    real, tries, pauses = idempotency.complete, [], []

    def complete(*args: Any, **kwargs: Any) -> bool:
        tries.append(1)
        if len(tries) <= 2:
            raise OperationalError("UPDATE", {}, ConnectionRefusedError(111))
        return real(*args, **kwargs)

    monkeypatch.setattr(idempotency, "complete", complete)
    monkeypatch.setattr(idempotency.time, "sleep", pauses.append)
    # given the work was done while the database refused the first two writes of its record
    with idempotency.held(eng, "k9", "email.send", 60) as claim:
        claim.result = {"message_id": "m1"}
    # then the third write recorded it: a duplicate gets the stored result instead of a rerun
    assert pauses == [0.5, 1.0]
    with idempotency.held(eng, "k9", "email.send", 60) as again:
        assert (again.done, again.result) == (True, {"message_id": "m1"})
