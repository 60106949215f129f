"""Exactly-once effect: every task runs under an idempotency key with a lease and a stored result.

SQS delivers at least once. Before a task runs, its key (the task id, or the caller's
``idempotency_key``) is claimed in the application database with a lease as long as the task's
hard time limit. A second delivery of a finished key returns the stored result without running
the task again; a delivery that finds a live lease waits for it; a lease left by a crashed worker
expires, so the work is finished by whoever comes next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, Engine, Float, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskapp.db import metadata

__all__ = ["idempotency_keys", "Claim", "claim", "complete", "release", "expire"]

RUNNING, DONE = "running", "done"

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("task_name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    # Epoch seconds: compared the same way on SQLite and PostgreSQL, whatever the time zone.
    Column("lease_until", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
    Column("result", JSON),
)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: run it, return the stored result, or wait."""

    acquired: bool
    done: bool = False
    result: Any = None
    wait_seconds: float = 0.0


def claim(engine: Engine, key: str, task_name: str, lease_seconds: float) -> Claim:
    """Take the lease on ``key``, or report that it is done or held by a live lease."""
    now = time.time()
    row = {
        "key": key,
        "task_name": task_name,
        "state": RUNNING,
        "lease_until": now + lease_seconds,
        "updated_at": now,
        "result": None,
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(idempotency_keys).values(row))
        return Claim(acquired=True)
    except IntegrityError:
        pass
    with engine.begin() as conn:
        current = conn.execute(
            select(
                idempotency_keys.c.state, idempotency_keys.c.lease_until, idempotency_keys.c.result
            ).where(idempotency_keys.c.key == key)
        ).one_or_none()
        if current is None:  # released between our insert and select: try once more
            return claim(engine, key, task_name, lease_seconds)
        if current.state == DONE:
            return Claim(acquired=False, done=True, result=current.result)
        taken = conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.key == key,
                idempotency_keys.c.state == RUNNING,
                idempotency_keys.c.lease_until < now,
            )
            .values(lease_until=now + lease_seconds, updated_at=now)
        ).rowcount
    if taken:
        return Claim(acquired=True)
    return Claim(acquired=False, wait_seconds=max(current.lease_until - now, 0.0))


def complete(engine: Engine, key: str, result: Any) -> None:
    """Record ``key`` as done with its (JSON-serializable) result."""
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == key)
            .values(state=DONE, result=result, updated_at=time.time())
        )


def release(engine: Engine, key: str) -> None:
    """Give up the lease after a failure, so a retry or redelivery can claim the key."""
    with engine.begin() as conn:
        conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.key == key, idempotency_keys.c.state == RUNNING
            )
        )


def expire(engine: Engine, older_than_seconds: float) -> int:
    """Delete finished keys last touched more than ``older_than_seconds`` ago; return how many."""
    cutoff = time.time() - older_than_seconds
    with engine.begin() as conn:
        return conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.state == DONE, idempotency_keys.c.updated_at < cutoff
            )
        ).rowcount
