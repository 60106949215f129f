"""Task runtimes, recorded by the worker, for the ``task_activity`` report's p50/p95.

Celery's result table (``celery_taskmeta``) keeps a task's final state, name, queue, retries and
``date_done``, but no start time: with ``task_track_started`` the STARTED write is overwritten by
the final one. So each worker times every execution (``task_prerun`` to ``task_postrun``, one
attempt each, wall clock) and appends one row to ``reports_task_runs``. Turn it off with
``TASKAPP_RECORD_TASK_RUNTIMES=false``; the report then shows empty runtime columns.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, String, Table
from sqlalchemy.exc import SQLAlchemyError

from config.settings import load_settings
from taskapp import db

__all__ = ["task_runs", "on_prerun", "on_postrun"]

log = logging.getLogger(__name__)

task_runs = Table(
    "reports_task_runs",
    db.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("task_id", String(155), nullable=False, index=True),
    Column("name", String(155), nullable=True),
    Column("queue", String(155), nullable=True),
    Column("state", String(50), nullable=True),
    Column("runtime_s", Float, nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, index=True),
)

#: Start of each running execution, by task id (the threads pool runs several at once).
_started: dict[str, float] = {}


def on_prerun(task_id: str | None = None, **_: Any) -> None:
    """Remember when execution of ``task_id`` began."""
    if task_id:
        _started[task_id] = time.monotonic()


def on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    """Append the execution's runtime to ``reports_task_runs``; never fail the task over it."""
    began = _started.pop(task_id, None) if task_id else None
    settings = load_settings()
    if began is None or not settings.record_task_runtimes:
        return
    request = getattr(task, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    row = {
        "task_id": task_id,
        "name": getattr(task, "name", None),
        "queue": delivery.get("routing_key"),
        "state": state,
        "runtime_s": time.monotonic() - began,
        "finished_at": datetime.now(UTC),
    }
    try:
        # The URL is resolved here: db.engine(None) would keep the first default it saw.
        with db.engine(settings.database_url.get_secret_value()).begin() as conn:
            conn.execute(task_runs.insert(), row)
    except SQLAlchemyError as exc:
        # Bookkeeping for a report must not turn a finished task into a failed one.
        log.warning("task runtime not recorded task_id=%s error=%s", task_id, type(exc).__name__)
