"""Platform tasks that belong to no family."""

from __future__ import annotations

from taskapp.app import app

__all__ = ["ping"]


@app.task(name="taskapp.ping", soft_time_limit=5, time_limit=10)
def ping() -> str:
    """Answer "pong": proves a round trip through the broker, a worker and the result store."""
    return "pong"
