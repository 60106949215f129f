"""Tasks used only by the test suite (registered by tests/conftest.py, never in production)."""

from __future__ import annotations

from celery.exceptions import Reject

from taskapp.app import app


@app.task(name="tests.add", soft_time_limit=5, time_limit=10)
def add(x: int, y: int) -> int:
    """Add two numbers."""
    return x + y


@app.task(name="tests.reject", soft_time_limit=5, time_limit=10)
def reject() -> None:
    """Refuse the message without requeue: SQS redelivers it until its redrive policy fires."""
    raise Reject("always rejected", requeue=False)
