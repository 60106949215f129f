"""Delivery semantics through the real worker on the moto server.

Every test counts executions in the database (``tests.tasks.effects``) and messages in SQS.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals
from celery.worker import state as worker_state

from config.settings import Settings
from taskapp.sqs.deadletter import read_reason
from tests.support.queues import drain, queue_url
from tests.support.waiting import result_or_whereabouts, wait_for
from tests.tasks import (
    database_blip,
    effect_times,
    fail_first_attempt,
    fail_permanently,
    flaky,
    record,
)

pytestmark = pytest.mark.integration


def _tag() -> str:
    return uuid.uuid4().hex


def _dead_letters(sqs: Any, settings: Settings, queue: str, timeout: float = 20) -> list[dict]:
    url = queue_url(sqs, settings, f"{queue}-dlq")
    found: list[dict[str, Any]] = []

    def poll() -> list[dict[str, Any]]:
        found.extend(drain(sqs, url, wait=1))
        return found

    wait_for(poll, f"a dead letter in {queue}-dlq", timeout=timeout, interval=0)
    for message in found:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


@pytest.fixture
def visibility(sqs: Any, settings: Settings) -> Iterator[Any]:
    """Set queues' VisibilityTimeout for one test; restore the provisioned values after."""
    saved: dict[str, str] = {}

    def set_timeout(queue: str, seconds: int) -> None:
        url = queue_url(sqs, settings, queue)
        if url not in saved:
            saved[url] = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]["VisibilityTimeout"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})

    yield set_timeout
    for url, value in saved.items():
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": value})


@pytest.fixture
def hop(app: Any, worker: Any) -> Iterator[Any]:
    """Shorten the SQS delay hop for one test, for the producer and the session worker."""
    dicts = [app.conf.broker_transport_options, worker.consumer.connection.transport_options]
    saved = [options["delay_hop"] for options in dicts]

    def set_hop(seconds: int) -> None:
        for options in dicts:
            options["delay_hop"] = seconds

    yield set_hop
    for options, value in zip(dicts, saved, strict=True):
        options["delay_hop"] = value


@pytest.mark.slow
def test_countdowns_longer_than_visibility_run_once_when_due_and_are_never_held(
    worker: Any, visibility: Any, sqs: Any, settings: Settings
) -> None:
    # given short visibility timeouts: 5 s on default, 30 s on cleanup
    visibility("default", 5)
    visibility("cleanup", 30)
    short, long_ = _tag(), _tag()
    sent = time.time()
    # when tasks are delayed well past those timeouts
    due = {
        record.apply_async((short,), countdown=12).id: 12,
        record.apply_async((long_,), countdown=70, queue="cleanup").id: 70,
    }
    # then until each is due, SQS holds it (delayed) and the worker does not
    held_early: set[str] = set()

    def long_ran() -> list[float]:
        waited = time.time() - sent
        reserved = {r.id for r in list(worker_state.reserved_requests)}
        held_early.update(i for i, at in due.items() if i in reserved and waited < at - 0.5)
        return effect_times(long_)

    (long_at,) = wait_for(long_ran, "the 70 s countdown to run", timeout=85, interval=0.25)
    assert held_early == set(), "the worker reserved a delayed message before it was due"
    # and each ran exactly once, when due
    (short_at,) = effect_times(short)
    assert 12 <= short_at - sent <= 14
    assert 70 <= long_at - sent <= 72
    time.sleep(2)  # a redelivery would show up as a second execution now
    assert len(effect_times(short)) == 1
    assert len(effect_times(long_)) == 1


def test_long_delay_hops_several_times_and_runs_once(
    worker: Any, hop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given a hop of 2 s: a 9 s delay is "long" (several hops), as 2 hours is with 900 s hops
    hop(2)
    tag = _tag()
    sent = time.time()
    with caplog.at_level(logging.DEBUG, logger="taskapp.sqs.delivery"):
        result = record.apply_async((tag,), countdown=9)
        # then its state does not move until it is due
        time.sleep(6)
        assert result.state == "PENDING"
        assert not effect_times(tag)
        result_or_whereabouts(result, timeout=15, interval=0.1)
    hops = [
        r for r in caplog.records if "hopped task" in r.getMessage() and result.id in r.getMessage()
    ]
    # and it was re-published hop by hop, then ran once, when due
    assert len(hops) >= 2
    (ran_at,) = effect_times(tag)
    assert ran_at - sent >= 9


def test_a_claim_checked_long_delay_hops_too_and_is_never_held(
    worker: Any, hop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.tasks import digest

    # given a hop of 2 s, and a body over the claim-check threshold: SQS holds only a pointer
    hop(2)
    data = "y" * (2 * 1024 * 1024)
    sent = time.time()
    with caplog.at_level(logging.DEBUG, logger="taskapp.sqs.delivery"):
        result = digest.apply_async((data,), countdown=7)
        assert result_or_whereabouts(result, timeout=30, interval=0.1)["length"] == len(data)
    # then the pointer was re-published hop by hop (with its ETA), not held by the worker until
    # due (a held countdown runs twice on SQS once it outlasts the visibility timeout), and ran
    # (one hop proves it: a held message is never re-published; how many depends on the load)
    hops = [r for r in caplog.records if "hopped task claim-check/" in r.getMessage()]
    assert len(hops) >= 1
    assert time.time() - sent >= 7


def test_task_running_three_visibility_timeouts_is_never_redelivered(worker: Any, sqs: Any) -> None:
    # given a task that runs 9 s, whose message's visibility is cut to 3 s once it started
    # (ChangeMessageVisibility on its receipt handle: the same clock SQS applies to a queue
    # whose VisibilityTimeout is 3 s)
    tag = _tag()
    received: list[str] = []

    def on_received(request: Any, **_: Any) -> None:
        received.append(request.id)

    signals.task_received.connect(on_received, weak=False)
    try:
        result = record.apply_async((tag,), kwargs={"sleep": 9})
        (running,) = wait_for(
            lambda: [r for r in list(worker_state.active_requests) if r.id == result.id],
            "the task to start",
            timeout=5,
        )
        info = running._message.delivery_info
        sqs.change_message_visibility(
            QueueUrl=info["sqs_queue"],
            ReceiptHandle=info["sqs_message"]["ReceiptHandle"],
            VisibilityTimeout=3,
        )
        assert result_or_whereabouts(result, timeout=20, interval=0.1) == 1
        time.sleep(4)  # a copy made visible during the run would have been received by now
    finally:
        signals.task_received.disconnect(on_received)
    # then the heartbeat kept it invisible: received once, ran once
    assert received.count(result.id) == 1
    assert len(effect_times(tag)) == 1


def test_retryable_error_retries_with_backoff_then_succeeds(worker: Any) -> None:
    tag = _tag()
    # given a task that fails twice with a retryable error
    result = flaky.delay(tag, failures=2)
    # then it succeeds on the third execution
    assert result_or_whereabouts(result, timeout=60, interval=0.1) == 3
    runs = effect_times(tag)
    assert len(runs) == 3


def test_exhausted_retries_end_in_the_dlq_with_the_reason(
    worker: Any, sqs: Any, settings: Settings
) -> None:
    tag = _tag()
    # given a task that keeps failing (max_retries=2)
    result = flaky.delay(tag, failures=99)
    # then after 3 executions the result is FAILURE with the error
    with pytest.raises(Exception, match="transient failure 3 of 99"):
        result_or_whereabouts(result, timeout=30, interval=0.1)
    assert result.state == "FAILURE"
    assert len(effect_times(tag)) == 3
    # and the message is in the default DLQ with type, message and attempts attached
    letters = [m for m in _dead_letters(sqs, settings, "default") if result.id in _body(m)]
    assert len(letters) == 1
    reason = read_reason(letters[0]["MessageAttributes"])
    assert reason is not None
    assert (reason.reason, reason.error_type, reason.attempts) == (
        "retries-exhausted",
        "RetryableError",
        3,
    )
    assert reason.error_message == "transient failure 3 of 99"
    assert reason.task_name == "tests.flaky"
    assert reason.task_id == result.id


def test_permanent_error_is_not_retried_and_is_dead_lettered(
    worker: Any, sqs: Any, settings: Settings
) -> None:
    tag = _tag()
    result = fail_permanently.delay(tag)
    with pytest.raises(Exception, match="field 'to' is empty"):
        result_or_whereabouts(result, timeout=20, interval=0.1)
    letters = [m for m in _dead_letters(sqs, settings, "default") if result.id in _body(m)]
    assert len(letters) == 1
    reason = read_reason(letters[0]["MessageAttributes"])
    assert reason is not None
    assert reason.reason == "permanent"
    assert reason.attempts == 1
    assert reason.error_type == "PermanentError"
    time.sleep(1)
    assert len(effect_times(tag)) == 1, "a permanent error was retried"


def test_poison_messages_are_dead_lettered_and_good_tasks_complete(
    worker: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    url = queue_url(sqs, settings, "default")
    tag = _tag()
    # given 4 bad messages injected with raw boto3 among 20 good tasks
    bad = {
        "garbage": base64.b64encode(b"\x00\xffnot a celery message").decode(),
        "wrong-shape": base64.b64encode(json.dumps({"hello": "world"}).encode()).decode(),
    }
    for body in bad.values():
        sqs.send_message(QueueUrl=url, MessageBody=body)
    unknown = app.send_task("tests.no_such_task", args=[1])
    unbound = record.apply_async(args=(tag,), kwargs={}, task_id=None)  # good, for contrast
    misbound = app.send_task("tests.add", args=[1, 2, 3])  # one argument too many
    good = [record.delay(tag) for _ in range(19)] + [unbound]
    # then every good task completes
    assert sorted(result_or_whereabouts(r, timeout=60, interval=0.1) for r in good) == list(
        range(1, 21)
    )
    # and each bad one is in the DLQ with its reason
    letters = _dead_letters(sqs, settings, "default", timeout=20)
    reasons = [read_reason(m.get("MessageAttributes", {})) for m in letters]
    assert all(r is not None for r in reasons)
    by_id = {r.task_id: r for r in reasons if r and r.task_id}
    assert by_id[unknown.id].reason == "poison"
    assert by_id[unknown.id].error_type == "NotRegistered"
    assert by_id[misbound.id].reason == "crash"
    assert by_id[misbound.id].error_type == "TypeError"
    anonymous = [r for r in reasons if r and not r.task_id]
    assert len(anonymous) == 2
    assert {r.reason for r in anonymous} == {"poison"}
    # and the counts add up: 20 good completed + 4 bad dead-lettered = 24 sent
    assert len(effect_times(tag)) + len(letters) == 24
    # and the worker is still consuming
    assert result_or_whereabouts(app.send_task("taskapp.ping"), timeout=20, interval=0.1) == "pong"


def test_duplicate_delivery_has_one_effect_and_returns_the_stored_result(worker: Any) -> None:
    tag = _tag()
    task_id = str(uuid.uuid4())
    # given the same message delivered twice (same task id)
    first = record.apply_async((tag,), task_id=task_id)
    assert result_or_whereabouts(first, timeout=20, interval=0.1) == 1
    second = record.apply_async((tag,), task_id=task_id)
    # then the second delivery returns the stored result and the effect happened once
    assert result_or_whereabouts(second, timeout=20, interval=0.1) == 1
    assert len(effect_times(tag)) == 1


def test_a_second_delivery_of_an_attempt_that_already_retried_is_dropped(worker: Any) -> None:
    tag = _tag()
    task_id = str(uuid.uuid4())
    # given attempt 0 failed and published its retry, due in 5 s
    result = fail_first_attempt.apply_async((tag, 5), task_id=task_id)
    wait_for(lambda: effect_times(f"{tag}:0"), timeout=20, what="attempt 0 ran")
    # when the same message of attempt 0 is delivered again meanwhile (a late ack, a send that
    # was retried after a lost response)
    fail_first_attempt.apply_async((tag, 5), task_id=task_id)
    # then the retry succeeds, and attempt 0 ran once: its duplicate neither ran nor retried
    assert result_or_whereabouts(result, timeout=30, interval=0.1) == 1
    assert len(effect_times(f"{tag}:0")) == 1
    assert len(effect_times(f"{tag}:1")) == 1


def test_a_task_that_waited_for_the_database_leaves_the_workers_held_requests(
    worker: Any,
) -> None:
    tag = _tag()
    # given a task whose first run finds the database unreachable (it is sent to come back)
    result = database_blip.delay(tag)
    # then it runs when it comes back
    wait_for(lambda: effect_times(tag), "the run after the wait", timeout=30)
    # and neither of its requests stays held by the worker, whose heartbeat would renew the
    # message (deleted when it was sent back) and the run's claim for the worker's life

    def held() -> list[Any]:
        return [r for r in list(worker_state.reserved_requests) if r.id == result.id]

    wait_for(lambda: not held(), "the worker to let go of the requests", timeout=10)


def test_caller_idempotency_key_dedupes_different_task_ids(worker: Any) -> None:
    tag = _tag()
    key = f"receipt-{tag}"
    results = [record.apply_async((tag,), idempotency_key=key) for _ in range(2)]
    assert [result_or_whereabouts(r, timeout=20, interval=0.1) for r in results] == [1, 1]
    assert len(effect_times(tag)) == 1


def _body(message: dict[str, Any]) -> str:
    try:
        return base64.b64decode(message["Body"]).decode()
    except (ValueError, UnicodeDecodeError):
        return message["Body"]


def test_older_entity_version_is_skipped_as_stale_not_applied(worker: Any) -> None:
    tag = _tag()
    entity = f"customer:{tag}"
    # given version 2 of an entity applied
    newer = record.apply_async((f"{tag}:v2",), entity=entity, entity_version=2)
    assert result_or_whereabouts(newer, timeout=20, interval=0.1) == 1
    # when a retried, older update (version 1) arrives afterwards
    older = record.apply_async((f"{tag}:v1",), entity=entity, entity_version=1)
    # then it is recorded as stale and its effect never happens
    wait_for(
        lambda: older.state == "STALE", "the older version to be STALE", timeout=20, interval=0.1
    )
    assert older.info == {"stale": True, "entity": entity, "version": 1}
    assert effect_times(f"{tag}:v1") == []
    assert len(effect_times(f"{tag}:v2")) == 1


def test_retry_keeps_the_callers_idempotency_key(worker: Any) -> None:
    from tests.tasks import flaky_keyed

    tag = _tag()
    result = flaky_keyed.apply_async((tag,), idempotency_key=f"key-{tag}")
    assert result_or_whereabouts(result, timeout=20, interval=0.1) == f"key-{tag}"
    assert len(effect_times(tag)) == 2
