"""Event sampling: a share of tasks whose events reach monitoring (``TASKAPP_EVENT_SAMPLE_RATE``).

A task's events are all kept or all dropped, decided by a hash of its id, so every process
agrees without talking to the others. Worker events (heartbeats) are never sampled: the
transport samples only messages routed ``task.*`` on Celery's event exchange.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_body", "keeps_task_event", "sample_task_events"]


def keeps_task_event(task_id: str | None, rate: float) -> bool:
    """Whether task ``task_id``'s events are sent at sample ``rate`` (every process agrees)."""
    if rate >= 1:
        return True
    if rate <= 0 or not task_id:
        return False
    digits = task_id.replace("-", "")[:8]
    try:
        return int(digits, 16) / 0xFFFFFFFF < rate
    except ValueError:
        return True


def json_body(message: dict[str, Any]) -> Any:
    """The decoded body of a kombu JSON message, else None."""
    if message.get("content-type") != "application/json":
        return None
    body = message.get("body")
    try:
        return json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return None


def sample_task_events(message: dict[str, Any], rate: float) -> bool:
    """Drop unsampled task events from ``message``; False if none is left to send."""
    if rate >= 1:
        return True
    body = json_body(message)
    if body is None:
        return True
    events = body if isinstance(body, list) else [body]
    kept = [e for e in events if keeps_task_event(e.get("uuid"), rate)]
    if not kept:
        return False
    if len(kept) != len(events):
        message["body"] = json.dumps(kept)
    return True
