"""Visibility heartbeat: keep every message the worker holds invisible only as long as it lives.

A consumer bootstep renews, every ``TASKAPP_HEARTBEAT_INTERVAL`` seconds, the visibility of each
message the worker has received and not yet finished — running or waiting for a pool slot —
to three intervals from now (ChangeMessageVisibilityBatch, 10 per call). A task may therefore
run longer than its queue's VisibilityTimeout without being handed to a second worker, and the
message of a worker that dies comes back within three intervals, not a whole timeout.

On a warm shutdown the worker finishes its running tasks; the prefetched messages no child has
started are handed back by the transport with visibility 0 (``Channel._put``, transport.py).

The same tick sends ``runs_renewed`` with how many messages it renewed and failed to renew and
the worker's hostname (an app can count them per worker: taskapp's workerstats), and
with the run tokens of the requests the worker is really
running (Celery's active requests, within their hard time limits): the app connects the renewal
of those runs' idempotency claims to it, so a claim lives exactly as long as its SQS message is
held. The worker's ``Request`` gives each request its token (``RUN_TOKEN`` in the request dict,
which the pool child sees as ``task.request.taskapp_run``), because the claim is taken in the
child while the heartbeat runs in the main process. A pool child killed mid-run leaves Celery's
active requests, so its token stops being renewed (and the Request sends ``runs_lost`` for it,
so its claims are freed before its message is requeued); a killed worker renews nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import bootsteps
from celery.utils.dispatch import Signal
from celery.worker import state as worker_state

from taskapp.sqs.plumbing import BATCH

__all__ = [
    "VisibilityHeartbeat",
    "change_visibility",
    "RUN_TOKEN",
    "runs_renewed",
    "runs_lost",
    "run_tokens",
]

#: The request-dict entry holding a run's token (a 32-character hex string).
RUN_TOKEN = "taskapp_run"

#: Sent by the worker's app (the sender) on every heartbeat tick with ``tokens`` (a set of run
#: tokens), ``lease_seconds``, and ``worker`` (hostname), ``renewed`` and ``failed`` (messages
#: whose visibility this tick did and did not renew).
#: Celery logs and swallows what a receiver raises, so a failed renewal never stops the ticks.
runs_renewed = Signal(
    name="taskapp.runs_renewed",
    providing_args=["tokens", "lease_seconds", "worker", "renewed", "failed"],
)
#: Sent by the worker's app with ``tokens`` when the pool reports the process of those runs
#: lost (a pool child killed): they will never finish, so their claims need not wait out a lease.
runs_lost = Signal(name="taskapp.runs_lost", providing_args=["tokens"])

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


def run_tokens(requests: Iterable[Any], now: float | None = None) -> set[str]:
    """The run tokens of ``requests`` that started and are within their hard time limits.

    The hard time limit stays a cap: a run past it is not renewed (Celery kills it in prefork).
    """
    now = time.time() if now is None else now
    tokens = set()
    for request in requests:
        token = (getattr(request, "_request_dict", None) or {}).get(RUN_TOKEN)
        started = getattr(request, "time_start", None)
        if not token or not started:
            continue
        task = getattr(request, "task", None)
        limit = request.time_limits[1] or getattr(task, "time_limit", None)
        if limit is None and task is not None:
            limit = task.app.conf.task_time_limit
        if not limit or now - started < limit:
            tokens.add(token)
    return tokens


class VisibilityHeartbeat(bootsteps.StartStopStep):
    """Consumer bootstep renewing the visibility of every message the worker holds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        options = parent.app.conf.broker_transport_options
        self.interval = float(options.get("heartbeat_interval", 10))
        self.tref: Any = None
        self.hostname = str(getattr(parent, "hostname", "") or "")
        self.app = parent.app

    def start(self, parent: Any) -> None:
        self.tref = parent.timer.call_repeatedly(self.interval, self.beat, priority=10)

    def beat(self) -> None:
        lease = int(self.interval * 3)
        reserved = list(worker_state.reserved_requests)
        held = sum(len(handles) for handles in _held(reserved).values())
        renewed = change_visibility(reserved, lease)
        # Only what is really running: a dead pool child's request has left active_requests.
        running = run_tokens(list(worker_state.active_requests))
        runs_renewed.send(
            sender=self.app,  # receivers are connected per app (taskapp.sqs.install)
            tokens=running,
            lease_seconds=lease,
            worker=self.hostname,
            renewed=renewed,
            failed=held - renewed,
        )

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
