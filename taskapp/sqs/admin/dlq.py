"""Dead-letter queues: depths, a non-consuming look inside, and purge.

Every work queue ``<q>`` has a DLQ ``<q>-dlq`` (``taskapp.sqs.admin.provision``). A message lands
there either through the queue's RedrivePolicy (``maxReceiveCount`` receives) or through
:func:`taskapp.sqs.deadletter.send_dead_letter`, which attaches why (``read_reason``).
Moving dead letters back is :mod:`taskapp.sqs.admin.redrive`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taskapp.sqs.admin.environment import Environment
from taskapp.sqs.deadletter import read_reason
from taskapp.sqs.naming import dlq_name, is_dlq, source_of
from taskapp.sqs.plumbing import BATCH, queue_depth

__all__ = [
    "DeadMessage",
    "DlqDepth",
    "describe",
    "dlq_name",
    "list_dlqs",
    "peek",
    "purge",
    "queue_url",
    "receive",
    "release",
]

#: Seconds a batch being looked at stays invisible (released right after the look).
PEEK_VISIBILITY = 30


def queue_url(sqs: Any, settings: Environment, name: str) -> str:
    """URL of this environment's queue ``name`` (without the prefix)."""
    return str(sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"])


@dataclass(frozen=True)
class DlqDepth:
    """Messages in one DLQ."""

    queue: str
    source: str
    visible: int
    in_flight: int
    delayed: int


def list_dlqs(sqs: Any, settings: Environment) -> list[DlqDepth]:
    """Depth of every DLQ of this environment (``<prefix>*-dlq``), by name."""
    resp = sqs.list_queues(QueueNamePrefix=settings.queue_prefix, MaxResults=1000)
    rows = []
    for url in sorted(resp.get("QueueUrls", [])):
        name = url.rsplit("/", 1)[-1].removeprefix(settings.queue_prefix)
        if not is_dlq(name):
            continue
        depth = queue_depth(sqs, url)
        rows.append(DlqDepth(name, source_of(name), depth.visible, depth.in_flight, depth.delayed))
    return rows


@dataclass(frozen=True)
class DeadMessage:
    """One dead letter, as ``taskapp dlq show`` prints it."""

    message_id: str
    task_name: str
    task_id: str
    args: str
    reason: str
    error: str
    attempts: int
    first_failure: datetime | None
    raw: dict[str, Any]


def _envelope(body: str) -> dict[str, Any]:
    """kombu's message envelope from an SQS body (base64 of JSON, or plain JSON)."""
    for text in (body, _b64(body)):
        if text is None:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _b64(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, ValueError):
        return None


def _timestamp(millis: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(millis) / 1000, UTC) if millis else None


def describe(message: dict[str, Any]) -> DeadMessage:
    """What a received DLQ message is: task, arguments, why it failed, when, how often."""
    headers = _envelope(message.get("Body", "")).get("headers") or {}
    letter = read_reason(message.get("MessageAttributes") or {})
    attrs = message.get("Attributes") or {}
    args = ", ".join(
        part
        for part in (headers.get("argsrepr"), headers.get("kwargsrepr"))
        if part not in (None, "()", "{}", "[]")
    )
    first = None
    if letter and letter.failed_at:
        first = datetime.fromisoformat(letter.failed_at)
    else:
        first = _timestamp(attrs.get("ApproximateFirstReceiveTimestamp"))
    return DeadMessage(
        message_id=message["MessageId"],
        task_name=(letter.task_name if letter and letter.task_name else headers.get("task", "")),
        task_id=(letter.task_id if letter and letter.task_id else headers.get("id", "")),
        args=args,
        reason=letter.reason if letter else "max-receives",
        error=f"{letter.error_type}: {letter.error_message}" if letter else "",
        attempts=letter.attempts if letter else int(attrs.get("ApproximateReceiveCount", 0)),
        first_failure=first,
        raw=message,
    )


def receive(sqs: Any, url: str, visibility: int, wait: int = 0) -> list[dict[str, Any]]:
    """Up to 10 messages of ``url`` with every attribute, hidden for ``visibility`` seconds."""
    resp = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=BATCH,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )
    return list(resp.get("Messages", []))


def release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    """Make received ``messages`` visible again right away (visibility 0)."""
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def peek(sqs: Any, settings: Environment, queue: str, limit: int = 50) -> list[DeadMessage]:
    """Up to ``limit`` messages of ``queue``'s DLQ, left in place.

    Each batch is hidden for a moment so the next receive returns the following messages, and
    all of them are made visible again at the end (visibility 0). A DLQ has no redrive policy of
    its own, so receiving there moves nothing; if the look is interrupted, the messages come
    back by themselves after ``PEEK_VISIBILITY`` seconds.
    """
    url = queue_url(sqs, settings, dlq_name(queue))
    seen: dict[str, dict[str, Any]] = {}
    try:
        while len(seen) < limit:
            batch = [m for m in receive(sqs, url, PEEK_VISIBILITY) if m["MessageId"] not in seen]
            if not batch:
                break
            seen.update((m["MessageId"], m) for m in batch)
    finally:
        release(sqs, url, list(seen.values()))
    return [describe(m) for m in list(seen.values())[:limit]]


def purge(sqs: Any, settings: Environment, queue: str) -> int:
    """Delete every message of ``queue``'s DLQ; return how many there were (approximately)."""
    url = queue_url(sqs, settings, dlq_name(queue))
    count = queue_depth(sqs, url).total
    sqs.purge_queue(QueueUrl=url)
    return count
