"""Visibility heartbeat: keep every message the worker holds invisible only as long as it lives.

A consumer bootstep renews, every ``TASKAPP_HEARTBEAT_INTERVAL`` seconds, the visibility of each
message the worker has received and not yet finished — running or waiting for a pool slot —
to three intervals from now (ChangeMessageVisibilityBatch, 10 per call). A task may therefore
run longer than its queue's VisibilityTimeout without being handed to a second worker, and the
message of a worker that dies comes back within three intervals, not a whole timeout.

On a warm shutdown the worker finishes its running tasks; the prefetched messages no child has
started are handed back by the transport with visibility 0 (``Channel._put``, transport.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import bootsteps
from celery.worker import state as worker_state

from taskapp.aws.sqs import BATCH

__all__ = ["VisibilityHeartbeat", "change_visibility"]

logger = logging.getLogger(__name__)


def _held(requests: Iterable[Any]) -> dict[str, list[tuple[Any, str]]]:
    """Receipt handles of SQS-delivered requests, grouped by queue URL."""
    by_queue: dict[str, list[tuple[Any, str]]] = defaultdict(list)
    for request in requests:
        message = getattr(request, "_message", None)
        info = getattr(message, "delivery_info", None) or {}
        if info.get("sqs_message") and info.get("sqs_queue"):
            by_queue[info["sqs_queue"]].append((message, info["sqs_message"]["ReceiptHandle"]))
    return by_queue


def change_visibility(requests: Iterable[Any], timeout: int) -> int:
    """Set the visibility of the requests' messages to ``timeout`` seconds; return how many."""
    changed = 0
    for url, held in _held(requests).items():
        sqs = held[0][0].channel.sqs()
        for start in range(0, len(held), BATCH):
            chunk = held[start : start + BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": timeout}
                for i, (_, handle) in enumerate(chunk)
            ]
            try:
                resp = sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError, OSError) as exc:
                logger.warning("visibility heartbeat failed on %s: %r", url, exc)
                continue
            changed += len(resp.get("Successful", []))
            for failure in resp.get("Failed", []):
                logger.warning("visibility heartbeat refused on %s: %s", url, failure)
    return changed


class VisibilityHeartbeat(bootsteps.StartStopStep):
    """Consumer bootstep renewing the visibility of every message the worker holds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        options = parent.app.conf.broker_transport_options
        self.interval = float(options.get("heartbeat_interval", 10))
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        self.tref = parent.timer.call_repeatedly(self.interval, self.beat, priority=10)

    def beat(self) -> None:
        change_visibility(list(worker_state.reserved_requests), int(self.interval * 3))

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
