"""Hostile SQS messages, built the way an attacker with SendMessage rights would send them.

``task_envelope`` is the kombu envelope our producers send (protocol 2, JSON, base64 body), so a
test can break exactly one field of an otherwise valid task message.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from taskapp.sqs.claimcheck import KEY_PREFIX, POINTER_CLASS
from tests.support.queues import drain

#: The first bytes of a JPEG (SOI, APP0 "JFIF"): not UTF-8 at the first byte.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256))


def task_envelope(
    app: Any,
    name: str = "tests.record",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """The kombu envelope of a task message, with ``headers`` merged in and ``body`` (the task
    body, normally ``[args, kwargs, embed]``) replaced if given."""
    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(task_id, name, args=args or [], kwargs=kwargs or {})
    task_body = message.body if body is None else body
    return {
        "body": base64.b64encode(json.dumps(task_body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {**message.headers, **(headers or {})},
        "properties": {
            **message.properties,
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "default"},
            "delivery_mode": 2,
            "priority": 0,
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def sqs_body(envelope: Any) -> str:
    """An envelope as kombu puts it on SQS (``sqs_base64_encoding``, the default)."""
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def pointer_body(bucket: str, key: str) -> str:
    """A claim-check pointer (Extended Client format) to ``s3://bucket/key``."""
    return json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])


def claim_check_key(suffix: str = "") -> str:
    return f"{KEY_PREFIX}{uuid.uuid4()}{suffix}"


def dead_letters_for(
    sqs: Any, dlq_url: str, bodies: set[str], timeout: float = 60
) -> dict[str, list[dict[str, Any]]]:
    """Every DLQ message whose body is one of ``bodies``, by body (others are left alone).

    Polls until each body has at least one letter or ``timeout`` passes; found ones are deleted.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout
    while set(found) < bodies and time.monotonic() < deadline:
        for message in drain(sqs, dlq_url, wait=1):
            if message["Body"] in bodies:
                found.setdefault(message["Body"], []).append(message)
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            else:  # someone else's: make it visible again at once
                sqs.change_message_visibility(
                    QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
    return found


def queue_is_empty(sqs: Any, url: str) -> bool:
    """No message waiting or in flight (delayed ones do not count)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(value) == 0 for value in attributes.values())
