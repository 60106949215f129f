"""Events are published off the worker's loop and dropped, not retried, while SNS fails:
monitoring must not slow the work down.

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

Off the loop
------------
A publish that gets no answer at all (SNS blackholed: the connection opens, nothing comes back)
held the loop for botocore's read timeout and retries: the soak (bench/soak.py) saw both
workers log nothing for a whole 30 s SQS/SNS blackhole, blocked in the Publish of a heartbeat
event, and renew no visibility meanwhile. So the caller only queues the event; one thread per
channel publishes, in order. A full queue (``CAPACITY``) drops the event, as an outage does.
At exit, and when the channel closes, what is queued gets ``FLUSH_SECONDS`` to go out
(the worker's offline event among it). A forked child starts with an empty queue of its own.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger
from kombu.transport.SQS.exceptions import UndefinedExchangeException

from taskapp.sqs.outages import receive_backoff

__all__ = ["EventOutages", "MAX_BACKOFF"]

logger = get_logger(__name__)

#: Longest pause between two tries of a failing SNS, in seconds.
MAX_BACKOFF = 30.0
#: Events a channel queues for its publisher thread before it drops new ones.
CAPACITY = 10_000
#: Seconds what is queued gets to go out when the channel closes or the process exits.
FLUSH_SECONDS = 2.0
#: What a failed publish raises (kombu: UndefinedExchangeException on a non-200 answer).
_PUBLISH_ERRORS = (BotoCoreError, ClientError, OSError, UndefinedExchangeException)


class EventOutages:
    """One channel's event publishing: queued for its publisher thread, which sends each event
    or drops it while SNS is failing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, capacity: int = CAPACITY):
        self.clock = clock
        self.failures = 0
        self.dropped = 0
        self.retry_at = 0.0
        self._capacity = capacity
        self._reset()
        _publishers.add(self)

    def _reset(self) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue(self._capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def publish(self, send: Callable[[], None]) -> bool:
        """Queue ``send`` unless an outage says to wait or the queue is full; True if queued."""
        if self._waiting():
            return False
        try:
            self._queue.put_nowait(send)
        except queue.Full:
            self.dropped += 1
            return False
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="taskapp-sns-events", daemon=True
                    )
                    self._thread.start()
        return True

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait up to ``timeout`` seconds for the queued events to be sent or dropped."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline or self._thread is None:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            send = self._queue.get()
            try:
                self._send(send)
            except Exception as exc:  # noqa: BLE001 - the one thread that sends every event
                # Whatever a send raises beyond a failed publish (its channel gone, a bug) costs
                # that event, not the thread and every event after it.
                self.dropped += 1
                logger.warning("event not published: %r", exc)
            finally:
                self._queue.task_done()

    def _waiting(self) -> bool:
        if self.failures and self.clock() < self.retry_at:
            self.dropped += 1
            return True
        return False

    def _send(self, send: Callable[[], None]) -> None:
        if self._waiting():
            return
        try:
            send()
        except _PUBLISH_ERRORS as exc:
            self._failed(exc)
            return
        if self.failures:
            logger.warning(
                "SNS publishing again after %d failures; %d events dropped",
                self.failures,
                self.dropped + self.failures,
            )
            self.failures = self.dropped = 0

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            logger.warning(
                "SNS publish failed (%s: %s); dropping events until it answers",
                type(exc).__name__,
                exc,
            )
        self.retry_at = self.clock() + receive_backoff(self.failures, MAX_BACKOFF)


#: Every channel's publisher in this process (flushed at exit, emptied in a forked child).
_publishers: weakref.WeakSet[EventOutages] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for publisher in list(_publishers):
        publisher.flush()


def _forget_in_child() -> None:
    # The parent's queued events are the parent's to send; its thread does not exist here.
    for publisher in list(_publishers):
        publisher._reset()


os.register_at_fork(after_in_child=_forget_in_child)
