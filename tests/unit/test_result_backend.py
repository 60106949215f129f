"""Celery's SQLite result store, as ``config/celery.py`` sets it up: nothing replaces SUCCESS.

A retry with a countdown of 0 (``retry_jitter`` draws it) is published before the retrying run
stores RETRY, so the next run can store SUCCESS first. Celery's database backend re-reads the row
and skips any write after a SUCCESS, but on SQLite that check only holds inside a real
transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery, states

import config.celery as celery_config


def _backend(url: str, callback: str = celery_config.database_engine_callback) -> Any:
    app = Celery("results", set_as_current=False)
    app.conf.update(
        result_backend=url,
        result_extended=True,
        database_create_tables_at_setup=True,
        database_engine_callback=callback,
    )
    return app.backend


@pytest.mark.parametrize("database", ["new", "made by an older set-up"])
def test_a_retry_stored_while_the_next_run_stores_success_does_not_replace_it(
    tmp_path: Path, database: str
) -> None:
    url = f"db+sqlite:///{tmp_path}/results.db"
    if database != "new":
        _backend(url, "taskapp.db.tune_engine").get_task_meta("created-the-table")
    retrying, next_run = _backend(url), _backend(url)
    task_id = "t-1"
    retrying.store_result(task_id, None, states.STARTED)
    # given the retrying run has read the row (STARTED) when the next run stores SUCCESS
    update = retrying._update_result
    interleaved: list[str] = []

    def success_lands_first(task: Any, result: Any, state: str, **kwargs: Any) -> Any:
        if state == states.RETRY and not interleaved:
            interleaved.append(state)
            next_run.store_result(task_id, 3, states.SUCCESS)
        return update(task, result, state, **kwargs)

    retrying._update_result = success_lands_first
    # when the retrying run then stores RETRY
    retrying.mark_as_retry(task_id, RuntimeError("transient failure 2 of 2"))
    # then the result stays SUCCESS, as a reader on its own connection sees it
    assert interleaved == [states.RETRY]
    meta = _backend(url).get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, 3)
