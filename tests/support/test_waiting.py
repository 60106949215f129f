"""``result_or_whereabouts``: a wait that gives up says where the task's message is."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from config.settings import Settings
from taskapp.sqs.deadletter import DeadLetter, send_dead_letter
from tests.support.queues import prefixed_app
from tests.support.waiting import result_or_whereabouts, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def nobody_reads(app: Any, sqs: Any, settings: Settings, provisioned: list[Any]) -> Any:
    """A producer whose ``default`` queue (and its DLQ) no worker reads, and that prefix."""
    prefix = f"{settings.queue_prefix}where{uuid.uuid4().hex[:6]}-"
    urls = [sqs.create_queue(QueueName=prefix + n)["QueueUrl"] for n in ("default", "default-dlq")]
    yield prefixed_app(app, prefix), prefix
    for url in urls:
        sqs.delete_queue(QueueUrl=url)


def _gives_up(result: Any, sqs: Any, prefix: str) -> str:
    with pytest.raises(AssertionError) as failed:
        result_or_whereabouts(result, sqs, "default", timeout=0.5, prefix=prefix)
    return str(failed.value)


def test_a_message_waiting_in_the_queue_is_reported_visible(nobody_reads: Any, sqs: Any) -> None:
    producer, prefix = nobody_reads
    result = producer.send_task("tests.add", args=(1, 2), queue="default")
    said = _gives_up(result, sqs, prefix)
    assert f"task {result.id}: state PENDING" in said
    assert re.search(r"\n  default: 1 visible, 0 in flight, 0 delayed", said), said
    assert "in default-dlq: no message of this task" in said


def test_a_delayed_message_and_one_in_flight_are_reported_so(nobody_reads: Any, sqs: Any) -> None:
    producer, prefix = nobody_reads
    producer.send_task("tests.add", args=(1, 2), queue="default", countdown=60)
    result = producer.send_task("tests.add", args=(3, 4), queue="default")
    url = sqs.get_queue_url(QueueName=prefix + "default")["QueueUrl"]
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=60, WaitTimeSeconds=5)["Messages"]
    said = _gives_up(result, sqs, prefix)
    assert re.search(r"\n  default: 0 visible, 1 in flight, 1 delayed", said), said


def test_a_dead_letter_of_the_task_is_reported_with_its_reason(nobody_reads: Any, sqs: Any) -> None:
    producer, prefix = nobody_reads
    result = producer.AsyncResult(str(uuid.uuid4()))
    url = sqs.get_queue_url(QueueName=prefix + "default")["QueueUrl"]
    letter = DeadLetter("poison", "ValueError", "body is [1, 2]", 1, task_id=result.id)
    send_dead_letter(sqs, url, "[1, 2]", letter)
    said = _gives_up(result, sqs, prefix)
    assert re.search(r"\n  default-dlq: 1 visible", said), said
    assert "reason=poison ValueError: body is [1, 2] (attempts 1" in said


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([0, [], "", "ready"])
    assert wait_for(lambda: next(values), "a value", timeout=5, interval=0) == "ready"


def test_wait_for_that_gives_up_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the moon \(last: None\)"):
        wait_for(lambda: None, "the moon", timeout=0.1, interval=0.02)
