"""Report sources on SQLite and PostgreSQL: bound parameters only, the same rows on both."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from celery.backends.database.models import TaskExtended
from sqlalchemy import func, insert, select

from taskapp import db
from taskapp.reports.catalogue import get_report
from taskapp.reports.runtimes import task_runs
from taskapp.reports.service import ReportRequest
from taskapp.sample import orders
from tests.reports.conftest import N_ORDERS, order_count

INJECTION = "x'; DROP TABLE orders; --"


def _rows(url: str, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    request = ReportRequest.build(name, params)
    with db.engine(url).connect() as conn:
        return [tuple(row) for row in request.report.rows(conn, request.values)]


def test_orders_by_day_sums_every_order_in_the_range_per_day_and_region(orders_db: str) -> None:
    # given the seeded orders (all within 2025-01-01 .. 2025-03-31)
    # when the report runs over the whole range
    rows = _rows(orders_db, "orders_by_day", {"start": "2025-01-01", "end": "2025-03-31"})
    # then every order is counted once, days are dates, and rows are ordered by day, region
    assert sum(r[2] for r in rows) == N_ORDERS
    with db.engine(orders_db).connect() as conn:
        revenue = conn.execute(select(func.sum(orders.c.amount_cents))).scalar_one()
    assert sum(r[3] for r in rows) == revenue
    assert all(isinstance(r[0], date) and isinstance(r[3], int) for r in rows)
    assert rows == sorted(rows, key=lambda r: (r[0], r[1]))


def test_range_end_is_inclusive_and_days_are_utc(orders_db: str) -> None:
    # given one order late on 2025-04-01 UTC and one a second before midnight
    with db.engine(orders_db).begin() as conn:
        conn.execute(
            insert(orders),
            [
                {
                    "id": 10_001,
                    "customer_id": 1,
                    "region": "zz",
                    "amount_cents": 1,
                    "created_at": datetime(2025, 4, 1, 23, 59, 59, tzinfo=UTC),
                },
                {
                    "id": 10_002,
                    "customer_id": 1,
                    "region": "zz",
                    "amount_cents": 2,
                    "created_at": datetime(2025, 4, 2, 0, 0, 0, tzinfo=UTC),
                },
            ],
        )
    # when the report covers exactly 2025-04-01
    rows = _rows(orders_db, "orders_by_day", {"start": "2025-04-01", "end": "2025-04-01"})
    # then only the first is in, on its UTC day
    assert rows == [(date(2025, 4, 1), "zz", 1, 1)]


def test_region_filter_and_order_detail_agree(orders_db: str) -> None:
    params = {"start": "2025-01-01", "end": "2025-03-31", "region": "eu"}
    by_day = _rows(orders_db, "orders_by_day", params)
    detail = _rows(orders_db, "orders", params)
    assert {r[1] for r in by_day} == {"eu"}
    assert sum(r[2] for r in by_day) == len(detail) > 0
    assert [r[1] for r in detail] == sorted(r[1] for r in detail)  # oldest first


def test_sql_injection_in_a_parameter_is_inert(orders_db: str) -> None:
    # given a region value that tries to close the string and drop the table
    params = {"start": "2025-01-01", "end": "2025-03-31", "region": INJECTION}
    # when the report runs
    rows = _rows(orders_db, "orders_by_day", params)
    # then it matched no region, and the table and its rows are still there
    assert rows == []
    assert order_count(orders_db) == N_ORDERS


def _task_row(
    task_id: str, name: str, queue: str, status: str, done: datetime, retries: int = 0
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "name": name,
        "queue": queue,
        "status": status,
        "date_done": done.replace(tzinfo=None),
        "retries": retries,
    }


def test_task_activity_counts_states_failure_rate_retries_and_runtimes(database_url: str) -> None:
    # given Celery's result table and the recorded runtimes of two tasks on 2025-02-10
    engine = db.engine(database_url)
    TaskExtended.__table__.create(engine, checkfirst=True)
    day = datetime(2025, 2, 10, 12, tzinfo=UTC)
    states = ["SUCCESS"] * 3 + ["FAILURE", "RETRY", "STARTED"]
    meta = [
        _task_row(f"e{i}", "email.send", "email", s, day, retries=1 if i == 3 else 0)
        for i, s in enumerate(states)
    ]
    meta += [
        _task_row("r1", "reports.generate", "reports", "SUCCESS", day),
        _task_row("old", "email.send", "email", "FAILURE", day - timedelta(days=30)),
    ]
    runs = [
        {
            "task_id": f"e{i}",
            "name": "email.send",
            "queue": "email",
            "state": "SUCCESS",
            "runtime_s": (i + 1) / 10,
            "finished_at": day,
        }
        for i in range(10)
    ]
    with engine.begin() as conn:
        conn.execute(insert(TaskExtended.__table__), meta)
        conn.execute(insert(task_runs), runs)
    # when the report covers that day
    rows = _rows(database_url, "task_activity", {"start": "2025-02-10", "end": "2025-02-10"})
    # then each (queue, task) has its counts, failure rate, retries and runtime percentiles
    names = [c.name for c in get_report("task_activity").columns]
    by_task = {r[1]: dict(zip(names, r, strict=True)) for r in rows}
    email = by_task["email.send"]
    assert (
        email["total"],
        email["succeeded"],
        email["failed"],
        email["retrying"],
        email["other"],
    ) == (6, 3, 1, 1, 1)
    assert email["failure_rate"] == 0.25
    assert email["retries"] == 1
    assert (email["runs"], email["p50_s"], email["p95_s"]) == (10, 0.5, 1.0)
    assert by_task["reports.generate"]["runs"] == 0
    assert by_task["reports.generate"]["p50_s"] is None
    # and a queue filter keeps only that queue
    only = _rows(
        database_url,
        "task_activity",
        {"start": "2025-02-10", "end": "2025-02-10", "queue": "reports"},
    )
    assert [r[1] for r in only] == ["reports.generate"]


def test_task_activity_is_empty_before_any_worker_wrote_results(database_url: str) -> None:
    assert _rows(database_url, "task_activity", {}) == []
