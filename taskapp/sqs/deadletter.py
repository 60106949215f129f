"""Dead letters with reasons: move a message to its queue's DLQ with why it failed attached.

The message body is copied byte for byte, so a redrive (``taskapp dlq redrive`` or SQS
StartMessageMoveTask) puts back exactly what the producer sent. The reason travels as SQS
message attributes, readable without decoding the body:

=========================  =============================================================
``taskapp.reason``         ``permanent`` | ``retries-exhausted`` | ``crash`` | ``poison``
                           | ``signature``
``taskapp.error_type``     exception class name, e.g. ``InvalidAddress``
``taskapp.error_message``  ``str(exception)``, truncated to 1,000 characters
``taskapp.attempts``       how many times the task ran (retries + 1) or was received
``taskapp.task_name``      the task name, when the message is a Celery task
``taskapp.task_id``        the task id, when known
``taskapp.source_queue``   the queue it came from (without the environment prefix)
``taskapp.failed_at``      ISO-8601 UTC time of the failure
=========================  =============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taskapp.sqs.naming import FIFO_SUFFIX, dlq_name

__all__ = [
    "DeadLetter",
    "UnacceptableMessage",
    "ATTRIBUTE_PREFIX",
    "dlq_url_for",
    "send_dead_letter",
    "read_reason",
]

ATTRIBUTE_PREFIX = "taskapp."
MAX_MESSAGE_CHARS = 1000


class UnacceptableMessage(Exception):
    """A received message that must never run: the worker dead-letters it with ``reason``.

    Raise it (or a subclass) anywhere a received SQS message is turned into a task request:
    the transport (claim-check pointer, body decoding), the task strategy (signature checks).
    The worker's consumer catches it and dead-letters the message instead of exiting.
    """

    reason = "poison"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


@dataclass(frozen=True)
class DeadLetter:
    """Why a message was dead-lettered."""

    reason: str
    error_type: str
    error_message: str
    attempts: int
    task_name: str = ""
    task_id: str = ""
    source_queue: str = ""
    failed_at: str = ""

    @classmethod
    def from_exception(
        cls, reason: str, exc: BaseException, attempts: int, **extra: str
    ) -> DeadLetter:
        return cls(reason, type(exc).__name__, str(exc), attempts, **extra)

    def attributes(self) -> dict[str, dict[str, str]]:
        """SQS MessageAttributes carrying this reason (empty values are left out)."""
        values = {
            "reason": self.reason,
            "error_type": self.error_type,
            "error_message": self.error_message[:MAX_MESSAGE_CHARS],
            "attempts": str(self.attempts),
            "task_name": self.task_name,
            "task_id": self.task_id,
            "source_queue": self.source_queue,
            "failed_at": self.failed_at or datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return {
            ATTRIBUTE_PREFIX + key: (
                {"DataType": "Number", "StringValue": value}
                if key == "attempts"
                else {"DataType": "String", "StringValue": value}
            )
            for key, value in values.items()
            if value
        }


def read_reason(message_attributes: Mapping[str, Any]) -> DeadLetter | None:
    """The ``DeadLetter`` recorded on a received DLQ message, or None if it carries none."""
    values = {
        key.removeprefix(ATTRIBUTE_PREFIX): attr.get("StringValue", "")
        for key, attr in message_attributes.items()
        if key.startswith(ATTRIBUTE_PREFIX)
    }
    if "reason" not in values:
        return None
    return DeadLetter(
        reason=values["reason"],
        error_type=values.get("error_type", ""),
        error_message=values.get("error_message", ""),
        attempts=int(values.get("attempts", "0") or 0),
        task_name=values.get("task_name", ""),
        task_id=values.get("task_id", ""),
        source_queue=values.get("source_queue", ""),
        failed_at=values.get("failed_at", ""),
    )


def dlq_url_for(queue_url: str) -> str:
    """The DLQ of a queue, by URL (provisioning names it ``<queue>-dlq[.fifo]``)."""
    base, name = queue_url.rsplit("/", 1)
    return f"{base}/{dlq_name(name)}"


def send_dead_letter(
    sqs: Any,
    queue_url: str,
    body: str,
    letter: DeadLetter,
    original_attributes: Mapping[str, Any] | None = None,
    fifo_ids: tuple[str, str] | None = None,
) -> str:
    """Send ``body`` to the DLQ of ``queue_url`` with ``letter``'s reason; return the message id.

    The original message's own attributes (for example a claim-check pointer) are kept. A FIFO
    DLQ needs ``fifo_ids``: the original message group and a deduplication id.
    """
    attributes = {
        key: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for key, value in (original_attributes or {}).items()
        if not key.startswith(ATTRIBUTE_PREFIX)
    }
    attributes.update(letter.attributes())
    extra = {}
    if queue_url.endswith(FIFO_SUFFIX):
        group, dedup = fifo_ids or ("dead-letters", letter.task_id or letter.failed_at)
        extra = {"MessageGroupId": group, "MessageDeduplicationId": dedup}
    resp = sqs.send_message(
        QueueUrl=dlq_url_for(queue_url), MessageBody=body, MessageAttributes=attributes, **extra
    )
    return str(resp["MessageId"])
