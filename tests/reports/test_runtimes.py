"""The runtime recorder: one row per execution in reports_task_runs, unless turned off."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from taskapp import db
from taskapp.reports import runtimes


@pytest.fixture(autouse=True)
def _own_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A buffer of this test's rows only, written when the test flushes it (no timed writes):
    rows wait in a per-process buffer, written in batches off the task's path."""
    monkeypatch.setattr(runtimes, "FLUSH_SECONDS", 3600.0)
    monkeypatch.setattr(runtimes, "_buffer", runtimes._Buffer())


def _execute(task_id: str) -> None:
    task = SimpleNamespace(
        name="tests.fake", request=SimpleNamespace(delivery_info={"routing_key": "default"})
    )
    runtimes.on_prerun(task_id=task_id, task=task)
    runtimes.on_postrun(task_id=task_id, task=task, state="SUCCESS")


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_each_execution_is_recorded_unless_turned_off(
    database_url: str, monkeypatch: pytest.MonkeyPatch, enabled: str
) -> None:
    # given the application database, with recording on or off
    monkeypatch.setenv("TASKAPP_DATABASE_URL", database_url)
    monkeypatch.setenv("TASKAPP_RECORD_TASK_RUNTIMES", enabled)
    # when a task executes twice (a retry is a second execution)
    _execute("t-1")
    _execute("t-1")
    runtimes.flush()
    # then each execution is one row with its name, queue, state and a runtime
    with db.engine(database_url).connect() as conn:
        rows = conn.execute(select(runtimes.task_runs)).all()
    if enabled == "false":
        assert rows == []
        return
    assert [(r.task_id, r.name, r.queue, r.state) for r in rows] == [
        ("t-1", "tests.fake", "default", "SUCCESS")
    ] * 2
    assert all(r.runtime_s >= 0 for r in rows)


def test_a_missing_table_never_fails_the_task(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given recording on, and a database without the reports migration
    url = f"sqlite:///{tmp_path}/empty.db"
    monkeypatch.setenv("TASKAPP_DATABASE_URL", url)
    monkeypatch.setenv("TASKAPP_RECORD_TASK_RUNTIMES", "true")
    # when a task finishes and its row is due to be written
    _execute("t-2")
    with caplog.at_level(logging.WARNING, logger=runtimes.__name__):
        assert runtimes.flush() == 0
    # then the write was tried and logged its failure instead of raising, and the row kept
    assert [r.getMessage() for r in caplog.records if r.name == runtimes.__name__] == [
        "task runtimes not recorded yet rows=1 error=OperationalError"
    ]
    # and once the table exists, the next flush records the execution
    db.upgrade(url)
    assert runtimes.flush() == 1
    with db.engine(url).connect() as conn:
        assert [r.task_id for r in conn.execute(select(runtimes.task_runs))] == ["t-2"]
