"""Celery's result table keeps the latest attempt's state: a late write of an earlier one is void.

A retry is published before the retrying run stores RETRY, so the next attempt can finish first.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from celery import states

from taskapp.app import app


def _backend(database_url: str) -> Any:
    backend = app.backend.__class__(app=app, url=database_url)
    backend.ResultSession().close()  # creates the tables, as a worker does at start
    return backend


def _store(backend: Any, task_id: str, state: str, retries: int, result: Any = None) -> None:
    request = SimpleNamespace(
        id=task_id,
        task="tests.flaky",
        args=[],
        kwargs={},
        retries=retries,
        hostname="w@test",
        delivery_info={"routing_key": "default"},
        ignore_result=False,
        group=None,
        parent_id=None,
        root_id=None,
        children=[],
    )
    backend.store_result(task_id, result, state, request=request)


@pytest.mark.parametrize(
    ("final", "result"),
    [(states.SUCCESS, 42), (states.FAILURE, RuntimeError("transient failure 3 of 99"))],
)
def test_a_late_retry_of_an_earlier_attempt_leaves_the_final_state(
    database_url: str, final: str, result: Any
) -> None:
    backend = _backend(database_url)
    task_id = str(uuid.uuid4())
    # given attempt 2 (retries=2) stored its final state
    _store(backend, task_id, states.STARTED, retries=2)
    _store(backend, task_id, final, retries=2, result=result)
    # when attempt 1's RETRY lands after it
    _store(backend, task_id, states.RETRY, retries=1, result=RuntimeError("transient failure 2"))
    # then the final state and its result stay
    meta = backend.get_task_meta(task_id)
    assert (meta["status"], meta["retries"]) == (final, 2)
    assert str(meta["result"]) == str(result)


def test_a_redriven_run_of_a_failed_task_still_records_its_states(database_url: str) -> None:
    backend = _backend(database_url)
    task_id = str(uuid.uuid4())
    _store(backend, task_id, states.FAILURE, retries=2, result=RuntimeError("boom"))
    # when the dead letter is redriven: the same headers, so the same retries
    _store(backend, task_id, states.STARTED, retries=2)
    assert backend.get_task_meta(task_id)["status"] == states.STARTED
    _store(backend, task_id, states.SUCCESS, retries=2, result="done")
    # then its new run's states replace the FAILURE, and a SUCCESS is still final
    _store(backend, task_id, states.STARTED, retries=2)
    assert backend.get_task_meta(task_id)["status"] == states.SUCCESS
