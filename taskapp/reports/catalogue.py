"""The built-in reports: ``task_activity`` (from the task records) and the demo business ones.

``REPORTS`` is the registry ``reports.generate`` looks names up in. It is built once, when this
module is imported; ``get_report`` and ``report_names`` read it.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, DateTime, String, and_, func, inspect, select
from sqlalchemy.sql.expression import column, table

from taskapp.reports.definitions import Chart, Column, Param, Report, SqlSource
from taskapp.reports.registry import Registry
from taskapp.reports.runtimes import task_runs

__all__ = [
    "REPORTS",
    "get_report",
    "report_names",
    "task_activity",
    "orders_by_day",
    "orders",
    "percentile",
]


def _today() -> date:
    return datetime.now(UTC).date()


def _month_ago() -> date:
    return _today() - timedelta(days=29)


START = Param("start", "date", default=_month_ago, doc="First day (UTC), default 29 days ago.")
END = Param("end", "date", default=_today, doc="Last day (UTC), inclusive; default today.")


# --- task_activity --------------------------------------------------------------------------

# Celery's result table, as the SQLAlchemy backend creates it with result_extended=True.
_taskmeta = table(
    "celery_taskmeta",
    column("name", String()),
    column("queue", String()),
    column("status", String()),
    column("retries"),
    column("date_done", DateTime()),
)

_STATE_COLUMNS = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "RETRY": "retrying",
    "REVOKED": "revoked",
}


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``None`` for no values)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _naive_utc(day: date) -> datetime:
    # celery_taskmeta.date_done is a naive UTC timestamp on every dialect.
    return datetime(day.year, day.month, day.day)


def _state_counts(
    conn: Connection, start: date, end: date, queue: str | None
) -> dict[tuple[str, str], tuple[Counter[str], int]]:
    cond = and_(_taskmeta.c.date_done >= _naive_utc(start), _taskmeta.c.date_done < _naive_utc(end))
    if queue is not None:
        cond = and_(cond, _taskmeta.c.queue == queue)
    query = (
        select(
            _taskmeta.c.queue,
            _taskmeta.c.name,
            _taskmeta.c.status,
            func.count(),
            func.coalesce(func.sum(_taskmeta.c.retries), 0),
        )
        .where(cond)
        .group_by(_taskmeta.c.queue, _taskmeta.c.name, _taskmeta.c.status)
    )
    groups: dict[tuple[str, str], tuple[Counter[str], int]] = {}
    for q, name, status, count, retries in conn.execute(query):
        counts, total_retries = groups.get((q or "", name or ""), (Counter(), 0))
        counts[status] += int(count)
        groups[(q or "", name or "")] = (counts, total_retries + int(retries))
    return groups


def _runtimes(
    conn: Connection, start: date, end: date, queue: str | None
) -> dict[tuple[str, str], tuple[int, float | None, float | None]]:
    def as_utc(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=UTC)

    cond = and_(task_runs.c.finished_at >= as_utc(start), task_runs.c.finished_at < as_utc(end))
    if queue is not None:
        cond = and_(cond, task_runs.c.queue == queue)
    key = (func.coalesce(task_runs.c.queue, ""), func.coalesce(task_runs.c.name, ""))
    query = select(*key, task_runs.c.runtime_s).where(cond).order_by(*key, task_runs.c.runtime_s)
    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    stats = {}
    # One (queue, task) group's runtimes in memory at a time, already sorted by the database.
    for group, members in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
        values = [r[2] for r in members]
        stats[group] = (len(values), percentile(values, 50), percentile(values, 95))
    return stats


def _task_activity_rows(conn: Connection, values: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    start, end, queue = values["start"], values["end"], values.get("queue")
    present = set(inspect(conn).get_table_names())
    counts = _state_counts(conn, start, end, queue) if "celery_taskmeta" in present else {}
    runtimes = _runtimes(conn, start, end, queue) if task_runs.name in present else {}
    for key in sorted(set(counts) | set(runtimes)):
        states, retries = counts.get(key, (Counter(), 0))
        finished = states["SUCCESS"] + states["FAILURE"]
        known = sum(states[s] for s in _STATE_COLUMNS)
        runs, p50, p95 = runtimes.get(key, (0, None, None))
        yield (
            *key,
            sum(states.values()),
            *(states[s] for s in _STATE_COLUMNS),
            sum(states.values()) - known,
            round(states["FAILURE"] / finished, 4) if finished else None,
            retries,
            runs,
            None if p50 is None else round(p50, 4),
            None if p95 is None else round(p95, 4),
        )


task_activity = Report(
    name="task_activity",
    title="Task activity by queue and task",
    description=(
        "Counts by final state from Celery's result table (celery_taskmeta, by date_done), "
        "failure rate = failed / (succeeded + failed), total retries; runtimes are wall-clock "
        "seconds per execution recorded by the workers in reports_task_runs."
    ),
    source=_task_activity_rows,
    params=(START, END, Param("queue", "str", max_length=155, doc="Only this queue.")),
    columns=(
        Column("queue"),
        Column("task"),
        Column("total", "int"),
        Column("succeeded", "int"),
        Column("failed", "int"),
        Column("retrying", "int"),
        Column("revoked", "int"),
        Column("other", "int", "Other states"),
        Column("failure_rate", "float"),
        Column("retries", "int"),
        Column("runs", "int", "Timed runs"),
        Column("p50_s", "float", "p50 runtime (s)"),
        Column("p95_s", "float", "p95 runtime (s)"),
    ),
)


# --- demo business: orders ------------------------------------------------------------------

_REGION = Param("region", "str", max_length=32, doc="Only this region (all when unset).")

# The SQL below is literal text; every input is a bound parameter. An unset (NULL) :region
# matches every row; the CAST gives PostgreSQL a type for a parameter that may be NULL.
_ORDERS_BY_DAY_PG = """
SELECT CAST(created_at AT TIME ZONE 'UTC' AS DATE) AS day, region,
       COUNT(*) AS orders, CAST(SUM(amount_cents) AS BIGINT) AS revenue_cents
FROM orders
WHERE created_at >= :start AND created_at < :end
  AND (CAST(:region AS VARCHAR(32)) IS NULL OR region = :region)
GROUP BY 1, 2
ORDER BY 1, 2
"""
# SQLite keeps UTC wall time as text; date() takes its day.
_ORDERS_BY_DAY_SQLITE = """
SELECT date(created_at) AS day, region,
       COUNT(*) AS orders, CAST(SUM(amount_cents) AS BIGINT) AS revenue_cents
FROM orders
WHERE created_at >= :start AND created_at < :end
  AND (CAST(:region AS VARCHAR(32)) IS NULL OR region = :region)
GROUP BY 1, 2
ORDER BY 1, 2
"""
_ORDERS = """
SELECT id, created_at, customer_id, region, amount_cents
FROM orders
WHERE created_at >= :start AND created_at < :end
  AND (CAST(:region AS VARCHAR(32)) IS NULL OR region = :region)
ORDER BY created_at, id
"""

orders_by_day = Report(
    name="orders_by_day",
    title="Orders by day and region",
    description="Order count and revenue (cents) per UTC day and region.",
    source=SqlSource(_ORDERS_BY_DAY_PG, dialects={"sqlite": _ORDERS_BY_DAY_SQLITE}),
    params=(START, END, _REGION),
    columns=(
        Column("day", "date"),
        Column("region"),
        Column("orders", "int"),
        Column("revenue_cents", "int", "Revenue (cents)"),
    ),
    chart=Chart(x="day", y="revenue_cents", series="region", title="Revenue per day (cents)"),
    splittable=True,
)

orders = Report(
    name="orders",
    title="Orders",
    description="Every order in the range, oldest first.",
    source=SqlSource(_ORDERS),
    params=(START, END, _REGION),
    columns=(
        Column("id", "int"),
        Column("created_at", "datetime"),
        Column("customer_id", "int"),
        Column("region"),
        Column("amount_cents", "int"),
    ),
    chart=Chart(x="created_at", y="amount_cents", title="Order amounts (cents)"),
    splittable=True,
)


#: Every built-in report by name.
REPORTS = Registry([task_activity, orders_by_day, orders])
get_report = REPORTS.get
report_names = REPORTS.names
