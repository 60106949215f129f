"""Sweep monitoring litter: ephemeral queues and SNS subscriptions of processes that died.

A live process renews a ``taskapp:lease`` tag on its ephemeral queues (see
:mod:`taskapp.sqs.ephemeral`) every minute while it consumes; one that crashed or was killed
leaves its queues and their subscriptions behind. ``cleanup.run`` calls :func:`sweep_stale`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from taskapp.sqs.admin.environment import Environment
from taskapp.sqs.boto import client_for
from taskapp.sqs.ephemeral import EPHEMERAL_INFIX, LEASE_TAG
from taskapp.sqs.plumbing import queue_is_missing

__all__ = ["SweepReport", "sweep_stale"]


@dataclass(frozen=True)
class SweepReport:
    """What :func:`sweep_stale` removed."""

    queues: tuple[str, ...]
    subscriptions: tuple[str, ...]


def _ephemeral_queue_urls(sqs: Any, prefix: str) -> list[str]:
    urls: list[str] = []
    kwargs: dict[str, Any] = {"QueueNamePrefix": prefix + EPHEMERAL_INFIX, "MaxResults": 1000}
    while True:
        resp = sqs.list_queues(**kwargs)
        urls += resp.get("QueueUrls", [])
        if not resp.get("NextToken"):
            return urls
        kwargs["NextToken"] = resp["NextToken"]


def _lease(sqs: Any, url: str) -> float | None:
    try:
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        if LEASE_TAG in tags:
            return float(tags[LEASE_TAG])
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["CreatedTimestamp"])
        return float(attrs["Attributes"]["CreatedTimestamp"])
    except ClientError as exc:
        if queue_is_missing(exc):
            return None
        raise


def _monitoring_topics(sns: Any, prefix: str) -> list[str]:
    wanted = {prefix + "celeryev", prefix + "celery-pidbox"}
    arns = []
    for page in sns.get_paginator("list_topics").paginate():
        topics = [t["TopicArn"] for t in page.get("Topics", [])]
        arns += [arn for arn in topics if arn.split(":")[-1] in wanted]
    return arns


def _orphan_subscriptions(
    sns: Any, sqs: Any, topics: Iterable[str], prefix: str, deleted: Iterable[str]
) -> list[str]:
    """Subscriptions of ephemeral queues that were just deleted or no longer exist."""
    gone = set(deleted)
    orphans = []
    for topic in topics:
        pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
        for page in pages:
            for sub in page.get("Subscriptions", []):
                queue = sub.get("Endpoint", "").split(":")[-1]
                if sub.get("Protocol") != "sqs" or not queue.startswith(prefix + EPHEMERAL_INFIX):
                    continue
                if queue in gone:
                    orphans.append(sub["SubscriptionArn"])
                    continue
                try:
                    sqs.get_queue_url(QueueName=queue)
                except ClientError as exc:
                    if queue_is_missing(exc):
                        orphans.append(sub["SubscriptionArn"])
    return orphans


def sweep_stale(
    settings: Environment, grace_seconds: float = 900, dry_run: bool = False
) -> SweepReport:
    """Delete ephemeral queues whose lease is older than ``grace_seconds``, and orphaned
    SNS subscriptions; both are left behind by processes that did not exit cleanly.

    A live process refreshes its queues' leases every minute while it consumes, so any grace
    of a few minutes is safe; the default leaves a quarter of an hour. ``dry_run`` reports what
    would go and deletes nothing.
    """
    # Quick calls: the sweep must not hang on an endpoint that is gone.
    sqs = client_for("sqs", settings, profile="quick")
    sns = client_for("sns", settings, profile="quick")
    now = time.time()
    stale = []
    for url in _ephemeral_queue_urls(sqs, settings.queue_prefix):
        lease = _lease(sqs, url)
        if lease is not None and now - lease > grace_seconds:
            stale.append(url)
    topics = _monitoring_topics(sns, settings.queue_prefix)
    names = [url.rsplit("/", 1)[-1] for url in stale]
    orphans = _orphan_subscriptions(sns, sqs, topics, settings.queue_prefix, names)
    if not dry_run:
        for arn in orphans:
            sns.unsubscribe(SubscriptionArn=arn)
        for url in stale:
            try:
                sqs.delete_queue(QueueUrl=url)
            except ClientError as exc:
                if not queue_is_missing(exc):
                    raise
    return SweepReport(tuple(names), tuple(orphans))
