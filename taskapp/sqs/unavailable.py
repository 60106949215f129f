"""A task that failed because the database was unreachable comes back later; it is no dead letter.

Why
---
The database holds the idempotency claims and the results. With ``task_track_started`` Celery
stores STARTED before the body runs; while PostgreSQL is down that store raises
``BackendStoreError`` "outside the body", the task counts as failed, and the worker
(``taskapp/sqs/worker.py``) dead-lettered it as a ``crash``. A claim that could not be taken
(``OperationalError`` in ``TaskappTask.__call__``) did the same. So a 20 s PostgreSQL outage
sent every task the worker received in that time to the DLQs, at full speed. Neither error is
the task's verdict on its message: nothing ran, or its run could not be recorded.

What instead
------------
The received message is published again to its queue, byte for byte, with ``DelaySeconds``
of 1, 2, 4 ... 60 s by how often it has waited (the ``TaskappWaits`` message attribute), and
the received copy is acknowledged. A fresh copy starts at receive count 1: merely handing the
message back (reject) would count a receive each time, and the queue's RedrivePolicy would
move it to the DLQ, without a reason, after ``maxReceiveCount`` short waits. After
``MAX_WAITS`` waits (about half an hour) the message is dead-lettered with reason
``unavailable``. FIFO queues take no per-message delay: there the message is handed back
(visibility backoff, then its RedrivePolicy).

Cost: nothing while the database answers; during an outage one SendMessage per received task
per wait.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import BackendStoreError

from taskapp.sqs.naming import FIFO_SUFFIX

__all__ = ["MAX_WAITS", "WAITS_ATTRIBUTE", "unavailable", "waits_of", "wait_delay", "come_back"]

logger = logging.getLogger(__name__)

#: Message attribute counting how often a message has waited for the database.
WAITS_ATTRIBUTE = "TaskappWaits"
#: Waits before the message is dead-lettered (``unavailable``): 1+2+...+32 s, then 60 s each.
MAX_WAITS = 32
#: Cap of one wait, in seconds.
MAX_WAIT_SECONDS = 60

#: What a result store that cannot be reached raises (the result backend's retries end in
#: ``BackendStoreError``); the app adds its own database's errors (``install(unavailable=...)``).
UNAVAILABLE: tuple[type[BaseException], ...] = (BackendStoreError,)


def unavailable(exc: BaseException, app_errors: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether ``exc`` says the database could not be reached, not that the task failed."""
    return isinstance(exc, (*UNAVAILABLE, *app_errors))


def waits_of(sqs_message: Any) -> int:
    """How often this message has already waited for the database."""
    value = (sqs_message.get("MessageAttributes") or {}).get(WAITS_ATTRIBUTE) or {}
    try:
        return int(value.get("StringValue", 0))
    except (TypeError, ValueError):
        return 0


def wait_delay(waits: int) -> int:
    """Seconds the next copy waits: 1, 2, 4 ... capped at ``MAX_WAIT_SECONDS``."""
    return int(min(2 ** min(waits, 6), MAX_WAIT_SECONDS))


def come_back(message: Any) -> bool:
    """Publish ``message`` (a received kombu message) again after its wait; False if it cannot
    be (a FIFO queue, an SQS error, or no SQS message at all): the caller hands it back."""
    info = message.delivery_info
    sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
    if not sqs_message or not queue_url or queue_url.endswith(FIFO_SUFFIX):
        return False
    waits = waits_of(sqs_message)
    attributes = {
        key: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for key, value in (sqs_message.get("MessageAttributes") or {}).items()
    }
    attributes[WAITS_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(waits + 1)}
    delay = wait_delay(waits)
    try:
        sqs = message.channel.sqs(
            queue=message.channel.canonical_queue_name(info.get("routing_key", ""))
        )
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=sqs_message["Body"],
            MessageAttributes=attributes,
            DelaySeconds=delay,
        )
    except (ClientError, BotoCoreError, OSError) as exc:
        logger.warning("could not re-publish a message of %s: %r", queue_url, exc)
        return False
    # The copy points at the same claim-check object: the ack must not delete it.
    info["dead_lettered"] = True
    return True
