"""TaskJsonFormatter: one JSON object per line, the running task's fields, no task arguments."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery._state import _task_stack
from hypothesis import given
from hypothesis import strategies as st

from taskapp.logs import TaskJsonFormatter


def record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("taskapp.test", logging.INFO, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


@pytest.fixture
def running(app: Any) -> Iterator[Any]:
    """``tests.add`` as the current task, on its second attempt from the email queue."""
    task = app.tasks["tests.add"]
    _task_stack.push(task)
    task.push_request(id="abc-123", retries=1, delivery_info={"routing_key": "email"})
    try:
        yield task
    finally:
        task.pop_request()
        _task_stack.pop()


def test_outside_a_task_a_line_has_no_task_fields() -> None:
    line = TaskJsonFormatter().format(record("hello %s", "world"))
    parsed = json.loads(line)
    assert parsed["message"] == "hello world"
    assert (parsed["level"], parsed["logger"]) == ("INFO", "taskapp.test")
    assert "timestamp" in parsed
    assert "process" in parsed
    assert not {"task_id", "task_name", "queue", "retries"} & set(parsed)


def test_inside_a_task_every_line_names_the_task(running: Any) -> None:
    parsed = json.loads(TaskJsonFormatter().format(record("working")))
    assert parsed["task_id"] == "abc-123"
    assert parsed["task_name"] == "tests.add"
    assert parsed["queue"] == "email"
    assert parsed["retries"] == 1


def test_celery_data_extra_with_task_arguments_is_left_out() -> None:
    # given Celery's success line, whose `data` extra holds args, kwargs and the return value
    line = TaskJsonFormatter().format(
        record(
            "Task %(name)s[%(id)s] succeeded",
            {"name": "email.send", "id": "x"},
            data={"args": "['secret@example.com']", "kwargs": "{'token': 's3cret'}"},
        )
    )
    # then the line says what the text line says, and no more
    assert "secret" not in line
    assert json.loads(line)["message"] == "Task email.send[x] succeeded"


@given(st.text())
def test_any_message_is_one_line_that_round_trips(message: str) -> None:
    line = TaskJsonFormatter().format(record("%s", message))
    assert "\n" not in line
    assert "\r" not in line
    assert json.loads(line)["message"] == message


def test_a_traceback_stays_inside_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        made = logging.LogRecord(
            "taskapp.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = TaskJsonFormatter().format(made)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc_info"]
