"""Which failures send a task to come back later instead of the DLQ (taskapp/sqs/unavailable.py)."""

from __future__ import annotations

import pytest
from celery.exceptions import BackendStoreError
from sqlalchemy.exc import OperationalError, ProgrammingError

from taskapp.app import app
from taskapp.errors import PermanentError, RetryableError
from taskapp.sqs.extension import verdicts
from taskapp.sqs.unavailable import MAX_WAIT_SECONDS, unavailable, wait_delay, waits_of
from taskapp.sqs.worker import classify

#: What taskapp told the SQS extension about its failures (taskapp/app.py, sqs.install).
TASKAPP = verdicts(app)


@pytest.mark.parametrize(
    "exc",
    [BackendStoreError("failed to store result"), OperationalError("SELECT 1", {}, Exception())],
)
def test_an_unreachable_database_is_no_verdict_on_the_task(exc: BaseException) -> None:
    assert unavailable(exc, TASKAPP.unavailable)
    # and once its waits are used up, its dead letter says why
    assert classify(exc, TASKAPP) == "unavailable"


@pytest.mark.parametrize(
    "exc",
    [
        ProgrammingError("SELECT nope", {}, Exception()),  # our bug, not an outage
        RetryableError("smtp 451"),
        PermanentError("bad address"),
        ValueError("x"),
    ],
)
def test_task_failures_are_not_outages(exc: BaseException) -> None:
    assert not unavailable(exc, TASKAPP.unavailable)


def test_waits_double_up_to_a_minute_and_are_read_from_the_message_attribute() -> None:
    assert [wait_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert max(wait_delay(n) for n in range(100)) == MAX_WAIT_SECONDS
    assert waits_of({}) == 0
    message = {"MessageAttributes": {"TaskappWaits": {"DataType": "Number", "StringValue": "3"}}}
    assert waits_of(message) == 3
    assert waits_of({"MessageAttributes": {"TaskappWaits": {"StringValue": "x"}}}) == 0
