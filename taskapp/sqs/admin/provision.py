"""Create or update every queue, its dead-letter queue and redrive policy; report their depths.

Provisioning is idempotent: it reads each queue's attributes and writes only those that differ,
so a second run reports every queue as unchanged.

Every queue and DLQ is set to take SQS's largest message, 1 MiB (``MaximumMessageSize``). The
claim-check threshold (``TASKAPP_CLAIM_CHECK_THRESHOLD``, just under 1 MiB) assumes it: a queue
at 256 KiB (SQS's documented default, and its ceiling before August 2025) refuses a 400 KB task
that is too small to be claim-checked. A DLQ needs it too, or dead-lettering such a message
fails. Queues that exist already are raised to it like any other attribute that differs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from taskapp.sqs.admin.environment import Environment
from taskapp.sqs.naming import FIFO_SUFFIX, QueueSpec, dlq_name
from taskapp.sqs.plumbing import (
    MAX_MESSAGE_BYTES,
    oldest_sent_age,
    peek,
    queue_depth,
    queue_is_missing,
    resolve_queue_urls,
)

__all__ = [
    "Change",
    "MAX_MESSAGE_SIZE",
    "QueueStatus",
    "provision",
    "queue_status",
    "predefined_queues",
    "QueuesMissing",
]

#: SQS maximum retention: a dead letter waits two weeks for someone to look at it.
DLQ_RETENTION = 14 * 86400
QUEUE_RETENTION = 4 * 86400
#: SQS's largest message, body and attributes (1 MiB), for every queue and DLQ.
MAX_MESSAGE_SIZE = MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Change:
    """What provisioning did to one queue: ``created``, ``updated`` or ``unchanged``."""

    queue: str
    action: str
    attributes: tuple[str, ...] = ()


def _desired(spec: QueueSpec, settings: Environment, dlq_arn: str) -> dict[str, str]:
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receives}
    return {
        **_encryption(settings),
        "VisibilityTimeout": str(spec.visibility_timeout),
        "ReceiveMessageWaitTimeSeconds": str(settings.wait_time_seconds),
        "MessageRetentionPeriod": str(QUEUE_RETENTION),
        "MaximumMessageSize": str(MAX_MESSAGE_SIZE),
        "RedrivePolicy": json.dumps(redrive, separators=(",", ":")),
    }


def _encryption(settings: Environment) -> dict[str, str]:
    """Server-side encryption with the configured KMS key, if any."""
    return {"KmsMasterKeyId": settings.sqs_kms_key} if settings.sqs_kms_key else {}


def _same(name: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if name == "RedrivePolicy":
        # SQS may echo maxReceiveCount as a string; compare the meaning, not the spelling.
        have, want = json.loads(current), json.loads(wanted)
        return have["deadLetterTargetArn"] == want["deadLetterTargetArn"] and int(
            have["maxReceiveCount"]
        ) == int(want["maxReceiveCount"])
    return current == wanted


def _ensure(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[Change, str]:
    """Create ``name`` with ``attributes`` or update what differs; return the change and URL.

    A ``.fifo`` name is created as a FIFO queue (a creation-only attribute SQS never changes).
    """
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if not queue_is_missing(exc):
            raise
        create = {**attributes, "FifoQueue": "true"} if name.endswith(FIFO_SUFFIX) else attributes
        url = sqs.create_queue(QueueName=name, Attributes=create)["QueueUrl"]
        return Change(name, "created", tuple(sorted(attributes))), url
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    stale = {k: v for k, v in attributes.items() if not _same(k, current.get(k), v)}
    if not stale:
        return Change(name, "unchanged"), url
    sqs.set_queue_attributes(QueueUrl=url, Attributes=stale)
    return Change(name, "updated", tuple(sorted(stale))), url


def _arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attrs["QueueArn"])


def provision(sqs: Any, settings: Environment, specs: Iterable[QueueSpec]) -> list[Change]:
    """Create or update each queue of ``specs`` and its DLQ; return one ``Change`` per SQS queue."""
    changes = []
    prefix = settings.queue_prefix
    for spec in specs:
        dlq_attrs = {
            **_encryption(settings),
            "MessageRetentionPeriod": str(DLQ_RETENTION),
            "MaximumMessageSize": str(MAX_MESSAGE_SIZE),
        }
        dlq_change, dlq_url = _ensure(sqs, prefix + spec.dlq, dlq_attrs)
        change, _ = _ensure(sqs, prefix + spec.name, _desired(spec, settings, _arn(sqs, dlq_url)))
        changes += [dlq_change, change]
    return changes


@dataclass(frozen=True)
class QueueStatus:
    """Depth of one queue: visible, in flight, delayed, and the age of its oldest message."""

    queue: str
    visible: int
    in_flight: int
    delayed: int
    oldest_age: timedelta | None


def _oldest_age(sqs: Any, url: str, is_dlq: bool) -> timedelta | None:
    # SQS exposes the oldest message's age only as a CloudWatch metric. A DLQ has no redrive
    # policy of its own, so peeking there (visibility 0) cannot push a message anywhere.
    if not is_dlq:
        return None
    age = oldest_sent_age(peek(sqs, url), datetime.now(UTC).timestamp())
    return None if age is None else timedelta(seconds=age)


def queue_status(sqs: Any, settings: Environment, specs: Iterable[QueueSpec]) -> list[QueueStatus]:
    """Depths of every queue and DLQ, in provisioning order."""
    rows = []
    for spec in specs:
        for name, is_dlq in ((spec.name, False), (spec.dlq, True)):
            url = sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"]
            depth = queue_depth(sqs, url)
            rows.append(
                QueueStatus(
                    name,
                    depth.visible,
                    depth.in_flight,
                    depth.delayed,
                    _oldest_age(sqs, url, is_dlq),
                )
            )
    return rows


class QueuesMissing(LookupError):
    """Queues a process needs do not exist; ``names`` are their full names."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def predefined_queues(sqs: Any, prefix: str, queues: Iterable[str]) -> dict[str, dict[str, str]]:
    """kombu ``predefined_queues`` for ``queues`` (names without ``prefix``) and their DLQs.

    One ListQueues (GetQueueUrl only for a name it did not show); :class:`QueuesMissing` names
    every queue that does not exist, instead of failing on the first.
    """
    wanted = [prefix + n for name in queues for n in (name, dlq_name(name))]
    urls, missing = resolve_queue_urls(sqs, prefix, wanted)
    if missing:
        raise QueuesMissing(missing)
    return {name: {"url": urls[name]} for name in wanted}
