"""Results written with the idempotency record (taskapp/results.py), on SQLite and PostgreSQL.

A task's claim writes STARTED and its completion SUCCESS, each in the idempotency record's
transaction; what Celery's result backend guaranteed still holds: a stock backend in another
process reads the row, nothing replaces a SUCCESS, a late RETRY of an earlier attempt is void.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from celery import states
from celery.app.trace import build_tracer
from celery.backends.database import DatabaseBackend
from sqlalchemy import Engine, event, select

from taskapp import idempotency
from taskapp.app import app
from taskapp.db import engine
from taskapp.results import Backend


def _request(task_id: str, retries: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        id=task_id,
        task="tests.add",
        args=[1, 2],
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


def _run_once(backend: Backend, key: str, request: Any, result: Any) -> None:
    """What TaskappTask does around a task body, with the combined writes."""
    eng = backend.engine
    claim = idempotency.claim(eng, key, "tests.add", 60, also=backend.started(request))
    assert claim.acquired
    idempotency.complete(eng, key, result, claim.owner, also=backend.succeeded(request, result))


def _stock(url: str) -> Any:
    """Celery's own backend on the same database, as another process (Flower, a producer)."""
    return DatabaseBackend(app=app, url=url)


def test_a_stock_backend_reads_a_success_written_with_the_completion(database_url: str) -> None:
    backend = Backend(app=app, url=database_url)
    request = _request(str(uuid.uuid4()))
    # when the claim and the completion write the row
    key = f"tests.add:{request.id}"
    claim = idempotency.claim(backend.engine, key, "tests.add", 60, also=backend.started(request))
    assert _stock(database_url).get_task_meta(request.id)["status"] == states.STARTED
    idempotency.complete(
        backend.engine, key, {"sum": 3}, claim.owner, also=backend.succeeded(request, {"sum": 3})
    )
    # then Celery's stock backend reads SUCCESS, the result and the extended columns
    meta = _stock(database_url).get_task_meta(request.id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, {"sum": 3})
    assert (meta["name"], meta["args"], meta["queue"], meta["retries"]) == (
        "tests.add",
        [1, 2],
        "default",
        0,
    )
    # and the idempotency record is done with the same result
    done = idempotency.claim(backend.engine, f"tests.add:{request.id}", "tests.add", 60)
    assert (done.done, done.result) == (True, {"sum": 3})


@pytest.mark.parametrize(
    ("late", "retries"), [(states.RETRY, 0), (states.FAILURE, 1), (states.STARTED, 1)]
)
def test_nothing_replaces_a_success_written_with_the_completion(
    database_url: str, late: str, retries: int
) -> None:
    backend = Backend(app=app, url=database_url)
    request = _request(str(uuid.uuid4()), retries=1)
    _run_once(backend, f"tests.add:{request.id}", request, 3)
    # when a late write lands after it (an earlier attempt's RETRY, a redelivery's states)
    backend.store_result(
        request.id, RuntimeError("late"), late, request=_request(request.id, retries)
    )
    # then the SUCCESS and its result stay
    meta = _stock(database_url).get_task_meta(request.id)
    assert (meta["status"], meta["result"], meta["retries"]) == (states.SUCCESS, 3, 1)


def test_a_second_combined_success_does_not_replace_the_first(database_url: str) -> None:
    backend = Backend(app=app, url=database_url)
    request = _request(str(uuid.uuid4()))
    _run_once(backend, f"tests.add:{request.id}", request, "first")
    # when another key's completion writes the same task id (a duplicate under another key)
    _run_once(backend, f"tests.add:other-{request.id}", request, "second")
    assert _stock(database_url).get_task_meta(request.id)["result"] == "first"


def test_a_late_retry_of_an_earlier_attempt_after_a_combined_started_is_void(
    database_url: str,
) -> None:
    backend = Backend(app=app, url=database_url)
    task_id = str(uuid.uuid4())
    # given attempt 2's claim wrote STARTED
    key = f"tests.add:{task_id}"
    assert idempotency.claim(
        backend.engine, key, "tests.add", 60, attempt=2, also=backend.started(_request(task_id, 2))
    ).acquired
    # when attempt 1's RETRY lands after it
    backend.store_result(task_id, RuntimeError("2"), states.RETRY, request=_request(task_id, 1))
    meta = _stock(database_url).get_task_meta(task_id)
    assert (meta["status"], meta["retries"]) == (states.STARTED, 2)


def test_concurrent_claims_write_one_started_row_and_one_holder(database_url: str) -> None:
    # given eight deliveries of one task claiming its key at the same moment
    backend = Backend(app=app, url=database_url)
    request = _request(str(uuid.uuid4()))
    key, outcomes, gate = f"tests.add:{request.id}", [], threading.Barrier(8)

    def deliver() -> None:
        gate.wait()
        claim = idempotency.claim(
            backend.engine, key, "tests.add", 60, also=backend.started(request)
        )
        outcomes.append(claim.acquired)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then exactly one holds the key, and one STARTED row exists
    assert sorted(outcomes) == [False] * 7 + [True]
    table = backend.task_cls.__table__
    with backend.engine.connect() as conn:
        rows = conn.execute(select(table.c.status).where(table.c.task_id == request.id)).all()
    assert [row.status for row in rows] == [states.STARTED]


@contextmanager
def _commits() -> Iterator[list[object]]:
    """The commits this thread makes in the block (the runtime writer and the session worker
    commit from threads of their own, whenever they are due)."""
    seen: list[object] = []
    thread = threading.get_ident()

    def commit(conn: Any) -> None:
        if threading.get_ident() == thread:
            seen.append(conn)

    event.listen(Engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(Engine, "commit", commit)


def test_a_task_run_by_the_worker_costs_two_transactions() -> None:
    """Claim + STARTED, completion + SUCCESS; the runtime row waits for a batch (was five)."""
    import taskapp.reports.tasks  # noqa: F401  (the runtime recorder's signals)
    from config.settings import load_settings
    from taskapp.db import upgrade
    from tests.tasks import add

    upgrade(load_settings().database_url.get_secret_value())  # the session's database
    task_id = str(uuid.uuid4())
    tracer = build_tracer(add.name, add, app=app, eager=False, propagate=True)
    request = {
        "id": task_id,
        "task": add.name,
        "hostname": "w@test",
        "delivery_info": {"routing_key": "default"},
        "retries": 0,
        "is_eager": False,
    }
    add.backend.get_task_meta("warm-up")  # the result tables, made once per process
    engine().connect().close()
    # when the worker's tracer runs the task
    with _commits() as commits:
        tracer(task_id, (2, 3), {}, request)
    # then its states and result are stored, in two transactions
    assert len(commits) == 2
    meta = _stock(add.backend.url).get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, 5)
    done = idempotency.claim(engine(), f"tests.add:{task_id}", add.name, 60)
    assert (done.done, done.result) == (True, 5)
