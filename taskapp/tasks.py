"""Platform tasks that belong to no family."""

from __future__ import annotations

from taskapp.app import app
from taskapp.retry import retry_policy

__all__ = ["ping"]


@app.task(
    name="taskapp.ping",
    soft_time_limit=5,
    time_limit=10,
    # A probe is never retried: it answers now, or it shows the failure it exists to show.
    **retry_policy(backoff=1, backoff_max=1, max_retries=0),
)
def ping() -> str:
    """Answer "pong": proves a round trip through the broker, a worker and the result store."""
    return "pong"
