"""Task runtimes, recorded by the worker, for the ``task_activity`` report's p50/p95.

Celery's result table (``celery_taskmeta``) keeps a task's final state, name, queue, retries and
``date_done``, but no start time: with ``task_track_started`` the STARTED write is overwritten by
the final one. So each worker times every execution (``task_prerun`` to ``task_postrun``, one
attempt each, wall clock) and records one row in ``reports_task_runs``. Turn it off with
``TASKAPP_RECORD_TASK_RUNTIMES=false``; the report then shows empty runtime columns.

A row is not worth a transaction of its own on every task's path (issue 16: it was one of five).
Rows wait in the process's buffer and a thread writes them together, ``FLUSH_ROWS`` at a time
or every ``FLUSH_SECONDS``; ``flush()`` writes what is left when a pool process or the worker
stops (``taskapp/reports/tasks.py`` connects it to Celery's shutdown signals, and ``atexit``
covers the rest). Only a killed process loses its last second of rows, which a report of
percentiles does not miss; a database outage keeps up to ``MAX_PENDING`` rows for later.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, String, Table
from sqlalchemy.exc import SQLAlchemyError

from config.settings import load_settings
from taskapp import db

__all__ = ["task_runs", "on_prerun", "on_postrun", "flush"]

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

#: Rows that trigger a write at once; a thread writes fewer every ``FLUSH_SECONDS``.
FLUSH_ROWS = 200
FLUSH_SECONDS = 1.0
#: Rows kept while the database cannot be written (the oldest go first).
MAX_PENDING = 10_000


class _Buffer:
    """This process's rows not yet written, and the thread that writes them."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.pid = os.getpid()
        self.writer: threading.Thread | None = None

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.rows.append(row)
            full = len(self.rows) >= FLUSH_ROWS
            if self.writer is None:
                self.writer = threading.Thread(
                    target=self._write_forever, name="taskapp-runtimes", daemon=True
                )
                self.writer.start()
        if full:
            self.wake.set()

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            rows, self.rows = self.rows, []
        return rows

    def put_back(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.rows[:0] = rows
            del self.rows[:-MAX_PENDING]

    def _write_forever(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            flush()


_buffer = _Buffer()


def _buffer_here() -> _Buffer:
    global _buffer
    if _buffer.pid != os.getpid():  # a forked pool process: its parent's rows are the parent's
        _buffer = _Buffer()
    return _buffer


def on_prerun(task_id: str | None = None, **_: Any) -> None:
    """Remember when execution of ``task_id`` began."""
    if task_id:
        _started[task_id] = time.monotonic()


def on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    """Buffer the execution's runtime for ``reports_task_runs`` (written by ``flush``)."""
    began = _started.pop(task_id, None) if task_id else None
    if began is None or not load_settings().record_task_runtimes:
        return
    request = getattr(task, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    _buffer_here().add(
        {
            "task_id": task_id,
            "name": getattr(task, "name", None),
            "queue": delivery.get("routing_key"),
            "state": state,
            "runtime_s": time.monotonic() - began,
            "finished_at": datetime.now(UTC),
        }
    )


def flush(**_: Any) -> int:
    """Write this process's buffered rows in one transaction; return how many were written.

    Never raises over the database: bookkeeping for a report must not fail a task or a
    shutdown. Rows that could not be written are kept for the next flush.
    """
    buffer = _buffer_here()
    rows = buffer.take()
    if not rows:
        return 0
    try:
        # The URL is resolved here: db.engine(None) would keep the first default it saw.
        url = load_settings().database_url.get_secret_value()
        with db.engine(url).begin() as conn:
            conn.execute(task_runs.insert(), rows)
    except SQLAlchemyError as exc:
        buffer.put_back(rows)
        log.warning(
            "task runtimes not recorded yet rows=%d error=%s", len(rows), type(exc).__name__
        )
        return 0
    return len(rows)


atexit.register(flush)
