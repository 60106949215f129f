"""Task runtimes are written in batches off the task's path (issue 16), and none is lost.

Each row used to be a transaction of its own at the end of every task.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError

from config.settings import load_settings
from taskapp.db import engine, upgrade
from taskapp.reports import runtimes


@pytest.fixture
def database() -> Engine:
    url = load_settings().database_url.get_secret_value()
    upgrade(url)  # the session's database
    runtimes.flush()  # rows of earlier tests are theirs
    return engine(url)


@pytest.fixture
def no_timed_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread waits for a full batch only, so each write is the test's doing."""
    monkeypatch.setattr(runtimes, "FLUSH_SECONDS", 3600.0)


@pytest.fixture
def commits() -> Iterator[list[object]]:
    seen: list[object] = []

    def commit(conn: Any) -> None:
        seen.append(conn)

    event.listen(Engine, "commit", commit)
    yield seen
    event.remove(Engine, "commit", commit)


def _run(prefix: str, count: int) -> None:
    task = SimpleNamespace(name="tests.add", request=SimpleNamespace(delivery_info={}))
    for index in range(count):
        task_id = f"{prefix}-{index}"
        runtimes.on_prerun(task_id=task_id)
        runtimes.on_postrun(task_id=task_id, task=task, state="SUCCESS")


def _rows(eng: Engine, prefix: str) -> int:
    table = runtimes.task_runs
    with eng.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(table.c.task_id.like(f"{prefix}-%"))
            ).scalar_one()
        )


@pytest.mark.usefixtures("no_timed_writes")
def test_runtimes_wait_for_one_batch_write(database: Engine, commits: list[object]) -> None:
    prefix = uuid.uuid4().hex
    # when fifty tasks finish
    _run(prefix, 50)
    # then none of them wrote to the database on its way out
    assert commits == []
    assert _rows(database, prefix) == 0
    # and one write records them all
    assert runtimes.flush() == 50
    assert len(commits) == 1
    assert _rows(database, prefix) == 50


def test_a_failed_write_keeps_the_rows_for_the_next(
    database: Engine, monkeypatch: pytest.MonkeyPatch, no_timed_writes: None
) -> None:
    prefix = uuid.uuid4().hex
    _run(prefix, 3)
    # given the database refuses the write once
    real = runtimes.db.engine
    monkeypatch.setattr(runtimes.db, "engine", lambda url: _Refusing())
    assert runtimes.flush() == 0
    monkeypatch.setattr(runtimes.db, "engine", real)
    # then the next flush writes the rows
    assert runtimes.flush() == 3
    assert _rows(database, prefix) == 3


class _Refusing:
    def begin(self) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is locked"))
