"""The session's queues seen from outside a worker: a producer on its own prefix, URLs, draining."""

from __future__ import annotations

import math
import time
from typing import Any

from config.settings import Settings

__all__ = ["drain", "prefixed_app", "queue_url"]

#: What a producer needs from the app to send as it does (routing, serializers, results).
_PRODUCER_CONF = (
    "broker_url",
    "broker_transport",
    "task_routes",
    "task_queues",
    "task_default_queue",
    "task_serializer",
    "accept_content",
    "result_backend",
    "result_extended",
    "result_accept_content",
)


def prefixed_app(app: Any, prefix: str) -> Any:
    """A producer with ``app``'s routing and serializers but its own queue prefix, and the SQS
    extension installed as on ``app`` (its publish hooks act only on apps that install it)."""
    from celery import Celery

    from taskapp import sqs

    other = Celery(f"producer-{prefix}", set_as_current=False)
    other.conf.update({key: app.conf[key] for key in _PRODUCER_CONF})
    other.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "queue_name_prefix": prefix,
    }
    sqs.install(other)
    return other


def queue_url(sqs: Any, settings: Settings, name: str) -> str:
    """URL of this session's queue ``name`` (without prefix)."""
    return str(sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"])


def drain(sqs: Any, url: str, wait: float = 0, expect: int = 0) -> list[dict[str, Any]]:
    """Receive (and leave invisible for 30 s) every message currently in a queue.

    ``wait`` long-polls for the first message; with ``expect``, polling goes on until that many
    have arrived or ``wait`` seconds have passed (delayed messages turn visible one by one).
    """
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while True:
        left = max(0, math.ceil(deadline - time.monotonic()))
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=left if len(messages) < max(expect, 1) else 0,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        batch = resp.get("Messages", [])
        messages += batch
        if not batch and (len(messages) >= expect or not left):
            return messages
