"""Receives that survive SQS outages: back off, log once, resume by themselves.

Why stock fails (kombu 5.7, ``kombu/asynchronous/aws/connection.py``): the worker's receive
is an async HTTP call whose answer goes through ``_on_list_ready`` and then the channel's
``_on_messages_ready``, and then ``_loop1`` schedules the next receive. A failed call takes
one of two paths there, and both stop the worker:

* a timeout, a connection refused or reset (curl's 599), a 408, 500, 502, 503 or 504 is
  turned into ``[]``, and ``_on_messages_ready`` calls ``[].get("Messages")``:
  ``AttributeError``, "Unrecoverable error", the worker exits (every worker of a fleet, on
  the same network blip);
* any other status (throttling answers 400) and a body that does not parse raise a bare
  ``Exception`` from inside the HTTP client's callback: it reaches the event loop the same way.

Even where such an error is caught further up, ``_loop1`` never runs, so the queue is never
polled again: a live worker that consumes nothing.

What we change: the receive's answer goes to a promise with an error handler. A dict is an
answer (delivered as before); anything else, an error, or a failure while the request is
built, is a failed receive: that queue's next receive is scheduled after a backoff (0.25 s
doubling, capped at ``wait_time_seconds``, so a worker resumes within two long polls once SQS
answers again). The outage is logged once when it starts and once when it ends, with the
number of failed calls, not once per call; a flapping endpoint, at most once a minute.

What it costs: nothing while SQS answers; during an outage one receive per queue per backoff.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.exceptions import HttpError
from kombu.log import get_logger
from vine import ensure_promise, promise

from taskapp.sqs.kombu_channel import ChannelMixin

__all__ = ["FIRST_BACKOFF", "ReceiveOutages", "receive_backoff"]

logger = get_logger(__name__)

#: Seconds before the first retry of a failed receive; doubled on each failure after it.
FIRST_BACKOFF = 0.25
#: Seconds after an outage warning during which the next outages are logged at debug level.
QUIET = 60.0
#: Errors a receive may raise while its request is built (queue URL lookup, signing).
_BUILD_ERRORS = (BotoCoreError, ClientError, HttpError, OSError)


def receive_backoff(failures: int, cap: float) -> float:
    """Seconds before the next receive after ``failures`` failed ones in a row (at least 1)."""
    return float(min(FIRST_BACKOFF * 2 ** min(failures - 1, 16), max(cap, FIRST_BACKOFF)))


class _Outage:
    """The failed receives of one channel since SQS last answered."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.level = logging.WARNING
        self.calls = 0
        self.by_queue: dict[str, int] = {}


class _Receive:
    """One receive in flight, and the timer that abandons it if no answer ever comes."""

    timer: Any = None


class ReceiveOutages(ChannelMixin):
    """Channel mixin: a failed receive backs off and is retried, never stops the worker."""

    _outage: _Outage | None = None

    def _get_async(self, queue: str, count: int = 1, callback: Any = None) -> Any:
        loop = ensure_promise(callback)
        token = _Receive()  # this receive; a late answer to an abandoned one does not loop again
        self._receiving()[queue] = token
        try:
            q_url = self._new_queue(queue)
            qname = self.canonical_queue_name(queue)
            answered = promise(
                self._on_receive_answer,
                (queue, q_url, loop, token),
                on_error=promise(self._on_receive_error, (queue, token)),
            )
            token.timer = self.hub.call_later(
                self._receive_deadline(), self._on_receive_lost, queue, token
            )
            return self._get_from_sqs(
                queue_name=qname,
                queue_url=q_url,
                count=count,
                connection=self.asynsqs(queue=qname),
                callback=answered,
            )
        except _BUILD_ERRORS as exc:
            self._on_receive_error(queue, token, exc)
            return loop

    def _receiving(self) -> dict[str, object]:
        """The receive in flight per queue (its token)."""
        receiving: dict[str, object] | None = self.__dict__.get("_taskapp_receiving")
        if receiving is None:
            receiving = self.__dict__["_taskapp_receiving"] = {}
        return receiving

    def _receive_deadline(self) -> float:
        # a long poll, the HTTP client's own 20 s timeout, and slack for a loaded machine
        return float(self.wait_time_seconds) + 30.0

    def _current(self, queue: str, token: object) -> bool:
        """Whether ``token`` is the receive in flight for ``queue`` (it is not, after this)."""
        if self._receiving().get(queue) is not token:
            return False
        del self._receiving()[queue]
        if isinstance(token, _Receive) and token.timer is not None:
            token.timer.cancel()
        return True

    def _on_receive_lost(self, queue: str, token: object) -> None:
        if self._current(queue, token):
            self._on_receive_failed(queue, f"no answer in {self._receive_deadline():.0f}s")

    def _on_receive_error(self, queue: str, token: object, *details: object) -> None:
        # vine calls an on_error with the failed promise's own arguments before the error
        if self._current(queue, token):
            self._on_receive_failed(queue, details[-1] if details else "unknown error")

    def _on_receive_answer(
        self, queue: str, q_url: str, loop: Any, token: object, response: Any
    ) -> None:
        current = self._current(queue, token)
        if not isinstance(response, dict):
            # kombu's [] for a timeout, a refused or reset connection, or a 5xx
            if current:
                self._on_receive_failed(queue, "no answer (timeout, connection failure or 5xx)")
            return
        if current:
            self._on_receive_ok(queue)
        else:
            loop = ensure_promise(None)  # abandoned: deliver what came; its successor loops
        try:
            delivered = self._on_messages_ready(q_url, queue, response)
        except Exception:  # the receive path's boundary: nothing past it may stop the loop
            # The messages not yet delivered come back after their visibility timeout.
            logger.exception("delivering messages received from %s failed", queue)
            delivered = 0
        loop(delivered)

    def _on_receive_ok(self, queue: str) -> None:
        outage = self._outage
        if outage is None or queue not in outage.by_queue:
            return
        del outage.by_queue[queue]
        if not outage.by_queue:
            self._outage = None
            logger.log(
                outage.level,
                "SQS receives resumed after %.1fs and %d failed calls",
                time.monotonic() - outage.started,
                outage.calls,
            )

    def _on_receive_failed(self, queue: str, error: object) -> None:
        if self.closed or self.connection is None:
            return
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage()
            # A flapping endpoint (throttling now and then) is one warning a minute, not one
            # per blip: the blips in between are logged at debug level.
            if outage.started - self.__dict__.get("_taskapp_outage_logged", -QUIET) < QUIET:
                outage.level = logging.DEBUG
            else:
                self.__dict__["_taskapp_outage_logged"] = outage.started
            logger.log(
                outage.level,
                "SQS receives failing (%s: %s); retrying with backoff until SQS answers",
                type(error).__name__ if isinstance(error, BaseException) else "receive",
                str(error)[:300],
            )
        failures = outage.by_queue.get(queue, 0) + 1
        outage.by_queue[queue] = failures
        outage.calls += 1
        delay = receive_backoff(failures, float(self.wait_time_seconds))
        logger.debug("receive from %s failed (%r); next in %.2fs", queue, error, delay)
        self.hub.call_later(delay, self._schedule_queue, queue)
