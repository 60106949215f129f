"""Counters only a worker sees, published where the metrics exporter can read them.

The visibility heartbeat's renewals and failures happen in the worker's main process, and a
duplicate delivery that finds a live claim (``TaskappTask._come_back_later``) waits in
whichever process runs it: a prefork pool child. The exporter is another process, maybe on
another host, so each worker publishes its counts into ``worker_stats``, one row per worker
hostname with cumulative counters.

No database or SQS work per task: a wait adds one to a shared-memory counter created at import,
before Celery forks its pool (so every child adds to the same one), and the main process adds
what changed since its last publish to its row once per heartbeat tick, in ONE statement (an
upsert), only when something changed. What a failed publish did not write is added next tick.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Float, String, Table, select

from taskapp.db import metadata

__all__ = ["Tally", "count_wait", "publish", "read", "waits", "worker_stats"]

worker_stats = Table(
    "worker_stats",
    metadata,
    Column("worker", String(200), primary_key=True),  # the worker's hostname (name@host)
    Column("renewals", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("waits", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),  # epoch seconds of the last publish
)

#: Idempotency waits of this worker, all its pool children included (see the module docstring).
_waits: Any = multiprocessing.Value("q", 0)


def count_wait() -> None:
    """Count one delivery sent back to wait for a live claim (no I/O)."""
    with _waits.get_lock():
        _waits.value += 1


def waits() -> int:
    """Idempotency waits counted by this process and its forked pool children so far."""
    return int(_waits.value)


def _insert(engine: Engine) -> Any:
    # Both dialects spell the upsert INSERT ... ON CONFLICT DO UPDATE (SQLite 3.24+).
    from sqlalchemy.dialects import postgresql, sqlite

    if engine.dialect.name == "postgresql":
        return postgresql.insert(worker_stats)
    return sqlite.insert(worker_stats)


def publish(
    engine: Engine,
    worker: str,
    renewals: int,
    failures: int,
    waits: int,
    now: float | None = None,
) -> None:
    """Add these counts to ``worker``'s row (created at the first publish): one statement."""
    stmt = _insert(engine).values(
        worker=worker,
        renewals=renewals,
        failures=failures,
        waits=waits,
        updated_at=time.time() if now is None else now,
    )
    c, new = worker_stats.c, stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.worker],
        set_={
            "renewals": c.renewals + new.renewals,
            "failures": c.failures + new.failures,
            "waits": c.waits + new.waits,
            "updated_at": new.updated_at,
        },
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def read(engine: Engine) -> dict[str, dict[str, float]]:
    """Every worker's cumulative counters (the exporter's read): one query."""
    c = worker_stats.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.worker, c.renewals, c.failures, c.waits, c.updated_at))
        return {
            row.worker: {
                "renewals": row.renewals,
                "failures": row.failures,
                "waits": row.waits,
                "updated_at": row.updated_at,
            }
            for row in rows
        }


class Tally:
    """The main process's counts not yet published (one per worker)."""

    def __init__(self) -> None:
        self.renewals = 0
        self.failures = 0
        self.waits_published = waits()  # counts from here on (0 in a worker: made at import)
        self.published = False

    def tick(self, engine: Engine, worker: str, renewed: int, failed: int) -> bool:
        """Add one heartbeat's counts; publish what changed (or the row, at the first tick).

        Return whether a statement ran. If it raises, the counts stay pending for the next tick.
        """
        self.renewals += renewed
        self.failures += failed
        current = waits()
        new_waits = current - self.waits_published
        if self.published and not (self.renewals or self.failures or new_waits):
            return False
        publish(engine, worker, self.renewals, self.failures, new_waits)
        self.renewals = self.failures = 0
        self.waits_published = current
        self.published = True
        return True
