"""A run whose work is done keeps trying to record its key done while the database is away.

Giving up at once left the claim to expire, so the message's next delivery ran the work again.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest
from celery import states
from celery.app.trace import build_tracer
from sqlalchemy.exc import OperationalError

from taskapp import idempotency
from taskapp.app import app
from taskapp.db import engine

app_module = sys.modules["taskapp.app"]  # the package's ``app`` attribute is the Celery app


@pytest.fixture(autouse=True)
def _migrated() -> None:
    from config.settings import load_settings
    from taskapp.db import upgrade

    upgrade(load_settings().database_url.get_secret_value())  # the session's database


def _run(task: Any, task_id: str) -> Any:
    tracer = build_tracer(task.name, task, app=app, eager=False, propagate=False)
    request = {
        "id": task_id,
        "task": task.name,
        "hostname": "w@test",
        "delivery_info": {"routing_key": "default"},
        "retries": 0,
        "is_eager": False,
    }
    return tracer(task_id, (2, 3), {}, request)


def _failing_first(times: int, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make the next ``times`` completions fail as an unreachable database does; return the
    pauses taken between tries."""
    tries: list[int] = []
    pauses: list[float] = []
    real = idempotency.complete

    def complete(*args: Any, **kwargs: Any) -> bool:
        tries.append(1)
        if len(tries) <= times:
            raise OperationalError("UPDATE idempotency_keys", {}, ConnectionRefusedError(111))
        return real(*args, **kwargs)

    monkeypatch.setattr(idempotency, "complete", complete)
    monkeypatch.setattr(app_module.time, "sleep", pauses.append)
    return pauses


def test_a_done_run_records_its_key_once_the_database_answers_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.tasks import add

    task_id = str(uuid.uuid4())
    # given the database refuses the first two attempts to record the run done
    pauses = _failing_first(2, monkeypatch)
    # when the worker's tracer runs the task
    _run(add, task_id)
    # then the third attempt records it (after growing pauses), and the result is a success
    assert app.AsyncResult(task_id).state == states.SUCCESS
    assert pauses == [0.5, 1.0]
    done = idempotency.claim(engine(), f"tests.add:{task_id}", add.name, 60)
    assert (done.done, done.result) == (True, 5)


def test_recording_gives_up_after_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tasks import add

    # given the database never answers
    monkeypatch.setattr(app_module, "COMPLETION_PATIENCE", 3)
    pauses = _failing_first(1000, monkeypatch)
    # when the task runs, it fails with the database's error once its patience is spent
    task_id = str(uuid.uuid4())
    _run(add, task_id)
    result = app.AsyncResult(task_id)
    assert result.state == states.FAILURE
    assert "OperationalError" in repr(result.result)
    assert pauses == [0.5, 1.0, 2.0]
