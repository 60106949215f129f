"""Events are dropped, not retried, while SNS fails: monitoring must not slow the work down.

Why
---
A worker's events (``-E``: task-received/started/succeeded, heartbeats) and every
``task-sent`` event go through SNS (``taskapp/sqs/monitoring.py``), published synchronously
on the worker's event loop, the one that also receives, acks and renews visibility. kombu
builds that SNS client with botocore's defaults: 5 attempts with backoff and 60 s timeouts
per publish. While SNS failed (the fault cell tests/faults/test_sns.py: 20 s of 500s) the
worker made about 27 Publish calls a second, each failing event holding the loop through its
retries; and Celery's event dispatcher keeps every event that failed in an in-memory buffer
it only flushes when it reconnects, which on SQS it never does: memory grows for as long as
SNS is down.

What instead
------------
The first failed publish opens an outage: the event is dropped (logged once per outage), and
so is every event for a backoff of 0.25 s, doubling up to 30 s; after it one event is tried
again. The first publish that passes ends the outage (logged once). Dropped events never reach
Celery's buffer. Cost: none while SNS answers; during an outage one publish per backoff and
the monitoring picture has a hole, which is what monitoring during an outage is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger
from kombu.transport.SQS.exceptions import UndefinedExchangeException

from taskapp.sqs.outages import receive_backoff

__all__ = ["EventOutages", "MAX_BACKOFF"]

logger = get_logger(__name__)

#: Longest pause between two tries of a failing SNS, in seconds.
MAX_BACKOFF = 30.0
#: What a failed publish raises (kombu: UndefinedExchangeException on a non-200 answer).
_PUBLISH_ERRORS = (BotoCoreError, ClientError, OSError, UndefinedExchangeException)


class EventOutages:
    """One channel's event publishing: passes through, or drops while SNS is failing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.dropped = 0
        self.retry_at = 0.0

    def publish(self, send: Callable[[], None]) -> bool:
        """Run ``send`` unless an outage says to wait; True if the event went out."""
        if self.failures and self.clock() < self.retry_at:
            self.dropped += 1
            return False
        try:
            send()
        except _PUBLISH_ERRORS as exc:
            self._failed(exc)
            return False
        if self.failures:
            logger.warning(
                "SNS publishing again after %d failures; %d events dropped",
                self.failures,
                self.dropped + self.failures,
            )
            self.failures = self.dropped = 0
        return True

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            logger.warning(
                "SNS publish failed (%s: %s); dropping events until it answers",
                type(exc).__name__,
                exc,
            )
        self.retry_at = self.clock() + receive_backoff(self.failures, MAX_BACKOFF)
