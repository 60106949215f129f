"""Native countdowns: ``countdown``/``eta`` become SQS ``DelaySeconds``, and long delays hop.

Stock Celery fetches a delayed message at once and holds it, unacknowledged, in worker memory
until its ETA; if that outlives the visibility timeout SQS hands the message out again and the
task runs several times (celery#3270, celery#5935). Here the producer sets ``DelaySeconds`` so SQS
itself keeps the message invisible until it is due. SQS caps that at 900 s, so a longer delay
"hops": the worker that receives a message whose ETA is still ahead re-publishes the same body
with ``DelaySeconds=min(remaining, hop)`` and deletes the received copy. The ETA header is never
changed, so the task runs once, when due, and its result state does not move until then.

FIFO queues take no per-message delay (SQS rejects it); there the ETA is left to Celery, which
holds the message in memory (see the README's FIFO section).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from taskapp.sqs.naming import FIFO_SUFFIX

__all__ = [
    "MAX_DELAY_SECONDS",
    "remaining_seconds",
    "delay_for",
    "apply_native_delay",
    "apply_fifo_defaults",
]

#: SQS accepts at most 900 seconds of per-message delay.
MAX_DELAY_SECONDS = 900
#: A message due within this many seconds is handed to Celery rather than hopped again.
DUE_SLACK = 1.0


def remaining_seconds(eta: str | datetime | None, now: datetime | None = None) -> float:
    """Seconds from ``now`` until ``eta`` (an ISO-8601 string or datetime); 0 if none or past."""
    if not eta:
        return 0.0
    when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def delay_for(remaining: float, hop: int = MAX_DELAY_SECONDS) -> int:
    """The ``DelaySeconds`` for a message due in ``remaining`` seconds (at most ``hop``)."""
    return min(math.ceil(remaining), hop, MAX_DELAY_SECONDS)


def apply_native_delay(
    headers: dict[str, Any], properties: dict[str, Any], queue: str, hop: int
) -> None:
    """Set ``DelaySeconds`` on an outgoing task message that carries an ETA (standard queues)."""
    if queue.endswith(FIFO_SUFFIX) or "DelaySeconds" in properties:
        return
    remaining = remaining_seconds(headers.get("eta"))
    if remaining > 0:
        properties["DelaySeconds"] = delay_for(remaining, hop)


def apply_fifo_defaults(headers: dict[str, Any], properties: dict[str, Any], queue: str) -> None:
    """On a FIFO queue, deduplicate by the idempotency key (task id by default) per attempt.

    The attempt number is part of the id: a retry re-publishes the same task id, and SQS would
    otherwise drop it as a duplicate within its five-minute window.
    """
    if not queue.endswith(FIFO_SUFFIX) or properties.get("MessageDeduplicationId"):
        return
    key = headers.get("idempotency_key") or headers.get("id")
    properties["MessageDeduplicationId"] = f"{key}:{headers.get('retries') or 0}"
