"""Ephemeral queues: the per-process queues of monitoring, their names, leases and cleanup.

Event receivers, remote-control mailboxes and reply queues are per process. They are named
``<prefix>mon-{ev,ctl,re}-<random>``, tagged with their owner, created with a 5-minute
retention, never given a redrive policy, and deleted together with their SNS subscriptions
when kombu deletes them or when the process exits cleanly (``atexit``). A fresh random name per
declaration matters on AWS, which refuses to re-create a deleted queue's name for 60 seconds.
While a process consumes from one, it refreshes a ``taskapp:lease`` tag (at most once a
minute); :func:`taskapp.sqs.admin.sweep.sweep_stale` deletes those whose lease ran out (crashed
processes).

Ephemeral queues live outside ``predefined_queues`` (production mode): they are always created
here, so the role needs ``sqs:CreateQueue``, ``DeleteQueue``, ``TagQueue``, ``ListQueueTags`` and
``SetQueueAttributes`` on ``<prefix>mon-*`` (see :mod:`taskapp.sqs.admin.policy`).

This module is the process-wide registry and needs no kombu (the sweeper and the IAM policy
read it too); the channel side is :class:`taskapp.sqs.monitoring.MonitoringChannel`.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from taskapp.sqs.plumbing import queue_is_missing

__all__ = [
    "EPHEMERA",
    "EPHEMERAL_INFIX",
    "LEASE_TAG",
    "Owned",
    "delete_owned",
    "EPHEMERAL_RETENTION",
    "LEASE_INTERVAL",
    "REPLY_WAIT_SECONDS",
    "ephemeral_kind",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # as kombu's get_logger: no "last resort" stderr lines

#: Every per-process queue is named ``<prefix>mon-<kind>-<token>``.
EPHEMERAL_INFIX = "mon-"
KINDS = {"events": "ev", "control": "ctl", "reply": "re"}
LEASE_TAG = "taskapp:lease"
#: Seconds between two lease refreshes of a queue being consumed.
LEASE_INTERVAL = 60
#: Events and control messages are worthless after minutes; SQS's minimum is 60 s.
EPHEMERAL_RETENTION = 300
#: Long-poll wait of a reply queue: short, because ``celery inspect`` waits about a second.
REPLY_WAIT_SECONDS = 1

_REPLY_QUEUE = re.compile(r"^[0-9a-f-]{36}\.reply\.[^.]+\.pidbox$")  # kombu Mailbox.get_reply_queue
_CONTROL_QUEUE = re.compile(r"^.+@.+\.[^.@]+\.pidbox$")  # kombu Mailbox.get_queue(hostname)
_EVENT_QUEUE = re.compile(r"^celeryev\.[0-9a-f-]{36}$")  # celery EventReceiver


def ephemeral_kind(kombu_name: str) -> str | None:
    """``events``, ``control`` or ``reply`` for a per-process kombu queue name, else None."""
    if _EVENT_QUEUE.match(kombu_name):
        return "events"
    if _REPLY_QUEUE.match(kombu_name):
        return "reply"
    if _CONTROL_QUEUE.match(kombu_name):
        return "control"
    return None


@dataclass
class Owned:
    """An ephemeral queue created by this process."""

    url: str
    pid: int
    subscriptions: list[str] = field(default_factory=list)


class _Ephemera:
    """Per-process names of ephemeral queues, and the ones this process must delete."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.names: dict[tuple[str, str], str] = {}  # (env prefix, kombu name) -> SQS name
        self.owned: dict[str, Owned] = {}  # SQS name -> queue this process created
        self.touched: dict[str, float] = {}  # SQS name -> last lease refresh
        self.clients: tuple[Any, Any] | None = None  # (sqs, sns) for the exit cleanup

    def name(self, prefix: str, kombu_name: str, kind: str) -> str:
        with self._lock:
            key = (prefix, kombu_name)
            if key not in self.names:
                token = secrets.token_hex(8)
                self.names[key] = f"{prefix}{EPHEMERAL_INFIX}{KINDS[kind]}-{token}"
            return self.names[key]

    def minted_not_created(self, sqs_name: str) -> bool:
        """Whether ``sqs_name`` was named here and not yet created: then it cannot exist (a
        fresh random token), and asking SQS for its URL would be a wasted request."""
        with self._lock:
            return sqs_name not in self.owned and sqs_name in self.names.values()

    def sibling_url(self, sqs_name: str) -> str | None:
        """The URL of queue ``sqs_name`` if it lives where this process's own ephemeral queues do
        (same endpoint and account: SQS URLs end in ``/<account>/<name>``); None if this process
        owns none. A guess: the caller falls back to asking SQS when the queue is not there."""
        with self._lock:
            for owned in self.owned.values():
                return f"{owned.url.rpartition('/')[0]}/{sqs_name}"
        return None

    def forget(self, sqs_name: str) -> Owned | None:
        with self._lock:
            for key in [k for k, v in self.names.items() if v == sqs_name]:
                del self.names[key]
            self.touched.pop(sqs_name, None)
            return self.owned.pop(sqs_name, None)

    def release_all(self) -> None:
        """Delete what this process created (``atexit``): subscriptions first, then queues."""
        with self._lock:
            mine = {n: o for n, o in self.owned.items() if o.pid == os.getpid()}
            self.owned.clear()
        if not mine or self.clients is None:
            return
        sqs, sns = self.clients
        try:
            for name, owned in mine.items():
                delete_owned(sqs, lambda: sns, name, owned)
        except EndpointConnectionError:
            # The endpoint is gone (a local emulator stopped first): sweep_stale cleans up.
            logger.info("monitoring queues left for the sweeper: endpoint unreachable")


def delete_owned(sqs: Any, sns: Callable[[], Any], name: str, owned: Owned) -> None:
    """Unsubscribe and delete one ephemeral queue; raise only if the endpoint is unreachable."""
    for arn in owned.subscriptions:
        try:
            sns().unsubscribe(SubscriptionArn=arn)
        except EndpointConnectionError:
            raise
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not unsubscribe %s: %s", arn, exc)
    try:
        sqs.delete_queue(QueueUrl=owned.url)
    except EndpointConnectionError:
        raise
    except ClientError as exc:
        if not queue_is_missing(exc):
            logger.warning("could not delete queue %s: %s", name, exc)
    except BotoCoreError as exc:
        logger.warning("could not delete queue %s: %s", name, exc)


EPHEMERA = _Ephemera()
atexit.register(EPHEMERA.release_all)
