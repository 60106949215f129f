"""SQS plumbing shared by provisioning, the DLQ commands, Flower's Broker page, the transport
and the application's own tools (taskapp re-exports it as ``taskapp.aws.sqs``).

One answer each to "is this error a missing queue?" (by botocore error code, never by
matching message text), "how deep is this queue?" and "what sits at the front of this DLQ?",
and SQS's size limits. A queue listing is kept per process for ``LISTING_TTL`` seconds, so the
channels a worker opens (and its start-up check) list a prefix once, not once each
(:mod:`taskapp.sqs.queue_cache`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

__all__ = [
    "BATCH",
    "DEPTH_ATTRIBUTES",
    "MAX_MESSAGE_BYTES",
    "QUEUE_MISSING_CODES",
    "QueueDepth",
    "forget_queue_url",
    "listed_queue_urls",
    "oldest_sent_age",
    "peek",
    "queue_depth",
    "queue_is_missing",
    "queue_urls",
    "resolve_queue_urls",
]

#: Entries per batch call (SendMessageBatch, DeleteMessageBatch,
#: ChangeMessageVisibilityBatch) and messages per ReceiveMessage: SQS takes at most 10.
BATCH = 10
#: SQS's largest message (body and attributes), and the most one batch call may carry: 1 MiB.
MAX_MESSAGE_BYTES = 1_048_576

#: Error codes of a queue that does not exist: the query protocol's and the JSON protocol's.
QUEUE_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: Queue URLs per ListQueues page (SQS's largest).
LIST_PAGE = 1000
#: Seconds a listing of a prefix's queues answers later lookups of the same process.
LISTING_TTL = 300.0
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


def peek(sqs: Any, url: str, message_attributes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Up to 10 messages of the queue at ``url``, left visible (one ReceiveMessage, visibility 0).

    Only for a queue without a redrive policy (a DLQ): every peek adds one to the messages'
    ApproximateReceiveCount, which on a work queue would push them towards its DLQ. SQS answers
    from a sample of its servers, so a deep queue returns some of its messages, not the oldest.
    """
    resp = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=BATCH,
        VisibilityTimeout=0,
        WaitTimeSeconds=0,
        MessageSystemAttributeNames=["SentTimestamp"],
        MessageAttributeNames=list(message_attributes),
    )
    messages: list[dict[str, Any]] = resp.get("Messages", [])
    return messages


def oldest_sent_age(messages: list[dict[str, Any]], now: float) -> float | None:
    """Seconds since the earliest ``SentTimestamp`` among ``messages`` (None if there are none)."""
    stamps = [int(m["Attributes"]["SentTimestamp"]) for m in messages]
    return now - min(stamps) / 1000 if stamps else None


def queue_urls(sqs: Any, prefix: str) -> dict[str, str]:
    """URL of every queue whose name starts with ``prefix``, by name (one ListQueues a page).

    Empty if listing is denied (no ``sqs:ListQueues``): callers then ask GetQueueUrl per name.
    The answer is kept for :func:`listed_queue_urls`.
    """
    urls: dict[str, str] = {}
    request: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": LIST_PAGE}
    try:
        while True:
            page = sqs.list_queues(**request)
            urls.update((url.rsplit("/", 1)[-1], url) for url in page.get("QueueUrls", []))
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    except ClientError:
        return urls
    _listings[_listing_key(sqs, prefix)] = (time.monotonic(), urls)
    return dict(urls)


def listed_queue_urls(sqs: Any, prefix: str) -> dict[str, str]:
    """:func:`queue_urls`, answered from this process's listing of the same prefix on the same
    endpoint, region and access key if one is younger than ``LISTING_TTL`` seconds."""
    kept = _listings.get(_listing_key(sqs, prefix))
    if kept is not None and time.monotonic() - kept[0] < LISTING_TTL:
        return dict(kept[1])
    return queue_urls(sqs, prefix)


def forget_queue_url(name: str) -> None:
    """Drop queue ``name`` (a deleted queue) from every kept listing."""
    for _, urls in list(_listings.values()):
        urls.pop(name, None)


#: (endpoint, region, access key, prefix) -> (monotonic time of the listing, URLs by name).
_listings: dict[tuple[str | None, ...], tuple[float, dict[str, str]]] = {}


def _listing_key(sqs: Any, prefix: str) -> tuple[str | None, ...]:
    # The account is in the credentials: another key may see other queues under the prefix.
    credentials = getattr(getattr(sqs, "_request_signer", None), "_credentials", None)
    meta = getattr(sqs, "meta", None)
    return (
        getattr(meta, "endpoint_url", None),
        getattr(meta, "region_name", None),
        getattr(credentials, "access_key", None),
        prefix,
    )


def resolve_queue_urls(sqs: Any, prefix: str, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """The URLs of ``names`` (full queue names under ``prefix``), and the names that do not exist.

    One ListQueues, then GetQueueUrl only for a name the listing did not show (eventual
    consistency, or no permission to list). Other errors propagate.
    """
    listed = queue_urls(sqs, prefix)
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        if name in listed:
            found[name] = listed[name]
            continue
        try:
            found[name] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if not queue_is_missing(exc):
                raise
            missing.append(name)
    return found, missing
