"""Tasks used only by the test suite (registered by tests/conftest.py, never in production).

Each execution of ``tests.record``/``tests.flaky``/``tests.fail_permanently`` writes one row to
``test_effects``, so tests count executions in the database, not in memory.
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import Reject
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, insert, select

from taskapp.app import app
from taskapp.db import engine
from taskapp.errors import PermanentError, RetryableError

effects_metadata = MetaData()
effects = Table(
    "test_effects",
    effects_metadata,
    Column("id", Integer, primary_key=True),
    Column("tag", String(200), nullable=False, index=True),
    Column("task_id", String(64)),
    Column("at", Float, nullable=False),
)


def record_effect(tag: str, task_id: str | None) -> int:
    """Write one execution row for ``tag``; return how many rows ``tag`` now has."""
    eng = engine()
    with eng.begin() as conn:
        conn.execute(insert(effects).values(tag=tag, task_id=task_id, at=time.time()))
        return int(conn.execute(select(func.count()).where(effects.c.tag == tag)).scalar_one())


def effect_times(tag: str) -> list[float]:
    """When each execution of ``tag`` happened (epoch seconds), in order."""
    with engine().connect() as conn:
        rows = conn.execute(select(effects.c.at).where(effects.c.tag == tag).order_by(effects.c.id))
        return [row.at for row in rows]


@app.task(name="tests.add", soft_time_limit=5, time_limit=10)
def add(x: int, y: int) -> int:
    """Add two numbers."""
    return x + y


@app.task(name="tests.reject", soft_time_limit=5, time_limit=10)
def reject() -> None:
    """Refuse the message without requeue: SQS redelivers it until its redrive policy fires."""
    raise Reject("always rejected", requeue=False)


@app.task(name="tests.record", bind=True, soft_time_limit=5, time_limit=10)
def record(self: Any, tag: str, sleep: float = 0.0, mark_start: bool = False, **_: Any) -> int:
    """Record one execution of ``tag`` after sleeping ``sleep`` seconds (and its start, as
    ``<tag>:start``, if ``mark_start``)."""
    if mark_start:
        record_effect(f"{tag}:start", self.request.id)
    time.sleep(sleep)
    return record_effect(tag, self.request.id)


@app.task(
    name="tests.flaky",
    bind=True,
    autoretry_for=(RetryableError,),
    throws=(PermanentError,),
    retry_backoff=1,
    retry_backoff_max=2,
    retry_jitter=True,
    max_retries=2,
    soft_time_limit=5,
    time_limit=10,
)
def flaky(self: Any, tag: str, failures: int) -> int:
    """Fail with a retryable error on the first ``failures`` executions, then succeed."""
    count = record_effect(tag, self.request.id)
    if count <= failures:
        raise RetryableError(f"transient failure {count} of {failures}")
    return count


@app.task(name="tests.fail_first_attempt", bind=True, soft_time_limit=5, time_limit=10)
def fail_first_attempt(self: Any, tag: str, countdown: float) -> int:
    """Record each attempt as ``<tag>:<retries>``; the first one retries after ``countdown``."""
    attempt = int(self.request.retries or 0)
    record_effect(f"{tag}:{attempt}", self.request.id)
    if attempt == 0:
        raise self.retry(countdown=countdown, max_retries=1)
    return attempt


@app.task(name="tests.database_blip", bind=True, soft_time_limit=5, time_limit=10)
def database_blip(self: Any, tag: str) -> int:
    """Fail the first execution as an unreachable database does (it comes back later), then
    record one execution of ``tag``."""
    from sqlalchemy.exc import OperationalError

    if record_effect(f"{tag}:tries", self.request.id) == 1:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused"))
    return record_effect(tag, self.request.id)


@app.task(
    name="tests.fail_permanently",
    bind=True,
    throws=(PermanentError,),
    soft_time_limit=5,
    time_limit=10,
)
def fail_permanently(self: Any, tag: str) -> None:
    """Refuse the input for good."""
    record_effect(tag, self.request.id)
    raise PermanentError(f"bad input for {tag}: field 'to' is empty")


@app.task(name="tests.digest", throws=(PermanentError,), soft_time_limit=10, time_limit=15)
def digest(data: str, fail: bool = False) -> dict[str, Any]:
    """Length and SHA-256 of ``data`` (or a permanent error, to dead-letter a big message)."""
    import hashlib

    if fail:
        raise PermanentError("refusing this payload")
    return {"length": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()}


def effect_tags(prefix: str) -> list[str]:
    """Tags starting with ``prefix``, in the order their executions were recorded."""
    with engine().connect() as conn:
        rows = conn.execute(
            select(effects.c.tag).where(effects.c.tag.startswith(prefix)).order_by(effects.c.id)
        )
        return [row.tag for row in rows]


@app.task(
    name="tests.flaky_keyed",
    bind=True,
    autoretry_for=(RetryableError,),
    retry_backoff=1,
    retry_backoff_max=1,
    retry_jitter=False,
    max_retries=3,
    soft_time_limit=5,
    time_limit=10,
)
def flaky_keyed(self: Any, tag: str) -> str:
    """Fail once, then report the idempotency key the retry ran under."""
    if record_effect(tag, self.request.id) == 1:
        raise RetryableError("first attempt fails")
    return str(getattr(self.request, "idempotency_key", None))


@app.task(name="tests.sleepy", bind=True, soft_time_limit=20, time_limit=25)
def sleepy(self: Any, tag: str, seconds: float) -> int:
    """Mark the start, sleep, then record one execution of ``tag``."""
    record_effect(f"{tag}:start", self.request.id)
    time.sleep(seconds)
    return record_effect(tag, self.request.id)


# 25 s, as tests.sleepy: the longest hard time limit on the default queue, whose
# VisibilityTimeout is derived from it (a longer one would slow every redelivery test).
@app.task(name="tests.record_long_limit", bind=True, soft_time_limit=20, time_limit=25)
def record_long_limit(self: Any, tag: str, sleep: float = 0.0) -> int:
    """``tests.record`` under a hard time limit far above its run: mark the start as
    ``<tag>:start``, sleep, record one execution of ``tag``."""
    record_effect(f"{tag}:start", self.request.id)
    time.sleep(sleep)
    return record_effect(tag, self.request.id)
