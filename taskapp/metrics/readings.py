"""What the metrics exporter reads, each from where it is observable outside the workers.

=======================  ===================================================================
queue depths             GetQueueAttributes, one call per queue and DLQ
oldest dead letter age   a peek of the DLQ (visibility 0, at most 10 messages): the oldest
                         ``SentTimestamp`` among them
dead letters by reason   the same peek's ``taskapp.reason`` attributes, scaled to the depth
backlog age              work queues cannot be peeked (a receive counts towards their
                         ``maxReceiveCount``), so: seconds since the exporter last saw the
                         queue with no visible message
worker heartbeats        the ``taskapp:lease`` tag a worker refreshes on its remote-control
                         queue (``<prefix>mon-ctl-*``) while it consumes: ListQueues +
                         ListQueueTags per worker
claim-check objects      ListObjectsV2 under ``claim-check/`` (1,000 objects a page)
idempotency claims       one grouped query on ``idempotency_keys``
worker counters          one query on ``worker_stats``: heartbeat renewals and failures and
                         idempotency waits, which only a worker sees, so each worker adds
                         them to its row once per heartbeat tick (taskapp/workerstats.py)
=======================  ===================================================================
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Engine, func, select

from taskapp.aws.sqs import oldest_sent_age, peek, queue_depth, queue_is_missing
from taskapp.idempotency import DONE, RUNNING, idempotency_keys
from taskapp.sqs.claimcheck import KEY_PREFIX
from taskapp.sqs.ephemeral import EPHEMERAL_INFIX, KINDS, LEASE_TAG

__all__ = [
    "ClaimChecks",
    "DeadLetters",
    "QueueReading",
    "claim_checks",
    "dead_letters",
    "idempotency_claims",
    "read_queue",
    "worker_leases",
]

REASON_ATTRIBUTE = "taskapp.reason"
#: A dead letter without a ``taskapp.reason``: SQS moved it after ``maxReceiveCount`` receives.
NO_REASON = "max-receives"
OWNER_TAG = "taskapp:owner"


@dataclass(frozen=True)
class DeadLetters:
    """A DLQ's peek: the oldest sampled message's age and the reasons of the sample."""

    oldest_age: float | None
    reasons: Counter[str] = field(default_factory=Counter)

    def estimate(self, depth: int) -> dict[str, int]:
        """Dead letters per reason, the sample's shares scaled to ``depth`` (exact if all seen)."""
        sampled = sum(self.reasons.values())
        if not sampled:
            return {}
        return {reason: round(depth * n / sampled) for reason, n in self.reasons.items()}


@dataclass(frozen=True)
class QueueReading:
    """One queue's counts, plus its dead letters if it is a DLQ."""

    visible: int
    in_flight: int
    delayed: int
    dead: DeadLetters | None = None


def dead_letters(sqs: Any, url: str, now: float) -> DeadLetters:
    """Peek the DLQ at ``url`` once and tally its messages' reasons."""
    messages = peek(sqs, url, (REASON_ATTRIBUTE,))
    reasons: Counter[str] = Counter()
    for message in messages:
        value = message.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {})
        reasons[value.get("StringValue") or NO_REASON] += 1
    return DeadLetters(oldest_sent_age(messages, now), reasons)


def read_queue(sqs: Any, url: str, is_dlq: bool, now: float) -> QueueReading | None:
    """The queue at ``url`` (and its peek, for a non-empty DLQ); None if it is gone."""
    try:
        depth = queue_depth(sqs, url)
        dead = None
        if is_dlq:
            dead = dead_letters(sqs, url, now) if depth.visible else DeadLetters(None)
    except ClientError as exc:
        if queue_is_missing(exc):
            return None
        raise
    return QueueReading(depth.visible, depth.in_flight, depth.delayed, dead)


def worker_leases(sqs: Any, prefix: str, now: float) -> dict[str, float]:
    """Seconds since each worker last refreshed its remote-control queue's lease, by owner."""
    kwargs: dict[str, Any] = {"QueueNamePrefix": f"{prefix}{EPHEMERAL_INFIX}{KINDS['control']}-"}
    ages: dict[str, float] = {}
    while True:
        resp = sqs.list_queues(MaxResults=1000, **kwargs)
        for url in resp.get("QueueUrls", []):
            try:
                tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
            except ClientError as exc:
                if queue_is_missing(exc):
                    continue  # deleted between the two calls: the worker stopped
                raise
            if LEASE_TAG in tags:
                owner = tags.get(OWNER_TAG) or url.rsplit("/", 1)[-1]
                ages[owner] = min(ages.get(owner, float("inf")), now - float(tags[LEASE_TAG]))
        if not resp.get("NextToken"):
            return ages
        kwargs["NextToken"] = resp["NextToken"]


@dataclass(frozen=True)
class ClaimChecks:
    """Claim-check payloads in S3: how many, how many bytes, the oldest one's age."""

    objects: int
    bytes: int
    oldest_age: float | None


def claim_checks(s3: Any, bucket: str, now: float) -> ClaimChecks:
    """List the claim-check prefix of ``bucket`` (one ListObjectsV2 per 1,000 objects)."""
    objects = size = 0
    oldest: float | None = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=KEY_PREFIX):
        for obj in page.get("Contents", []):
            objects += 1
            size += obj["Size"]
            stamp = obj["LastModified"].timestamp()
            oldest = stamp if oldest is None else min(oldest, stamp)
    return ClaimChecks(objects, size, None if oldest is None else now - oldest)


def idempotency_claims(engine: Engine, now: float | None = None) -> dict[str, float]:
    """Claims by state: ``running`` (a live lease a duplicate waits on), ``expired`` (a lease
    its holder outlived: the next delivery takes over), ``done``; plus ``longest_wait``, the
    seconds a duplicate of the longest live lease would wait now."""
    now = time.time() if now is None else now
    keys = idempotency_keys.c
    live = keys.lease_until > now
    with engine.connect() as conn:
        done = conn.execute(select(func.count()).where(keys.state == DONE)).scalar_one()
        running, expired, until = conn.execute(
            select(
                func.count().filter(live),
                func.count().filter(~live),
                func.max(keys.lease_until).filter(live),
            ).where(keys.state == RUNNING)
        ).one()
    return {
        "running": running,
        "expired": expired,
        "done": done,
        "longest_wait": max(0.0, until - now) if until is not None else 0.0,
    }
