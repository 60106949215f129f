"""SQS plumbing shared by provisioning, the DLQ commands, Flower's Broker page and the transport.

One answer each to "is this error a missing queue?" (by botocore error code, never by
matching message text) and "how deep is this queue?", and SQS's size limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

__all__ = [
    "BATCH",
    "DEPTH_ATTRIBUTES",
    "MAX_MESSAGE_BYTES",
    "QUEUE_MISSING_CODES",
    "QueueDepth",
    "queue_depth",
    "queue_is_missing",
]

#: Entries per batch call (SendMessageBatch, DeleteMessageBatch,
#: ChangeMessageVisibilityBatch) and messages per ReceiveMessage: SQS takes at most 10.
BATCH = 10
#: SQS's largest message (body and attributes), and the most one batch call may carry: 1 MiB.
MAX_MESSAGE_BYTES = 1_048_576

#: Error codes of a queue that does not exist: the query protocol's and the JSON protocol's.
QUEUE_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: The three approximate counts of GetQueueAttributes, in :class:`QueueDepth`'s field order.
DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def queue_is_missing(exc: ClientError) -> bool:
    """Whether ``exc`` says the queue does not exist (or was deleted)."""
    return exc.response.get("Error", {}).get("Code") in QUEUE_MISSING_CODES


@dataclass(frozen=True)
class QueueDepth:
    """Approximate messages in one queue: visible, in flight (received) and delayed."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_depth(sqs: Any, url: str) -> QueueDepth:
    """The approximate counts of the queue at ``url`` (one GetQueueAttributes call)."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(DEPTH_ATTRIBUTES))
    counts = attrs.get("Attributes", {})
    visible, in_flight, delayed = (int(counts.get(name, 0)) for name in DEPTH_ATTRIBUTES)
    return QueueDepth(visible, in_flight, delayed)
