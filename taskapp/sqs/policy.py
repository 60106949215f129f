"""A least-privilege IAM policy for the configured queues, monitoring topics and bucket.

``taskapp aws policy`` prints it. Statements are split by role, so each can be attached on its
own (``--role worker`` / ``--role release``):

* **worker** (workers, beat, Flower, producers): consume, send and dead-letter on the work
  queues and their DLQs (never create them: workers run with ``TASKAPP_PREDEFINED_QUEUES``);
  the per-process monitoring queues ``<prefix>mon-*`` and the two SNS topics
  ``<prefix>celeryev`` and ``<prefix>celery-pidbox`` (see ``taskapp/sqs/monitoring.py``); the
  objects of ``TASKAPP_BUCKET``; SES sending from ``TASKAPP_MAIL_FROM`` when the email backend is
  ``ses``; the KMS key of encrypted queues; and ``sts:AssumeRole`` on ``TASKAPP_STS_ROLE_ARN``.
* **release** (``taskapp queues provision``): create the queues and DLQs and set their
  attributes, nothing else.

Only ``sqs:ListQueues`` (which IAM cannot scope to a queue) and the monitoring queues (named at
run time) use wildcards.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

from config.settings import Settings
from taskapp.queues import dlq_name, queue_names
from taskapp.sqs.monitoring import EPHEMERAL_INFIX

__all__ = ["ROLES", "build_policy", "topic_names"]

ROLES = ("worker", "release")

WORKER_QUEUE_ACTIONS = [
    "sqs:ChangeMessageVisibility",  # visibility heartbeat, backoff of rejected messages
    "sqs:DeleteMessage",  # acks (DeleteMessageBatch is authorised by DeleteMessage)
    "sqs:GetQueueAttributes",  # redrive policy check, queue depths
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",  # retries, delay hops, canvas, dead letters (and the batch forms)
]
MONITORING_QUEUE_ACTIONS = [
    *WORKER_QUEUE_ACTIONS,
    "sqs:CreateQueue",
    "sqs:DeleteQueue",
    "sqs:ListQueueTags",
    "sqs:SetQueueAttributes",  # the queue policy that lets SNS deliver
    "sqs:TagQueue",  # owner and lease tags
]
TOPIC_ACTIONS = [
    "sns:CreateTopic",
    "sns:ListSubscriptionsByTopic",
    "sns:Publish",
    "sns:Subscribe",
    "sns:TagResource",  # kombu tags the topics it creates
    "sns:Unsubscribe",
]
RELEASE_QUEUE_ACTIONS = [
    "sqs:CreateQueue",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:SetQueueAttributes",
]
_KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def topic_names(settings: Settings) -> list[str]:
    """SNS topics of the monitoring transport: events and remote control."""
    return [settings.queue_prefix + "celeryev", settings.queue_prefix + "celery-pidbox"]


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources,
        **extra,
    }


def _kms_statement(settings: Settings, region: str, account: str) -> dict[str, Any] | None:
    key = settings.sqs_kms_key
    if not key or key == "alias/aws/sqs":
        return None  # the AWS managed key's policy already admits SQS callers of the account
    actions = ["kms:Decrypt", "kms:GenerateDataKey"]
    if key.startswith("arn:"):
        return _statement("WorkerQueueKey", actions, [key])
    if _KEY_ID.match(key):
        return _statement("WorkerQueueKey", actions, [f"arn:aws:kms:{region}:{account}:key/{key}"])
    return _statement(
        "WorkerQueueKey",
        actions,
        [f"arn:aws:kms:{region}:{account}:key/*"],
        Condition={"ForAnyValue:StringEquals": {"kms:ResourceAliases": key}},
    )


def _ses_statement(settings: Settings, region: str, account: str) -> dict[str, Any] | None:
    if settings.email_backend != "ses":
        return None
    address = parseaddr(settings.mail_from)[1]
    domain = address.rpartition("@")[2]
    identities = [f"arn:aws:ses:{region}:{account}:identity/{name}" for name in (domain, address)]
    return _statement("WorkerSendEmail", ["ses:SendEmail", "ses:SendRawEmail"], identities)


def build_policy(
    settings: Settings, account: str, roles: tuple[str, ...] = ROLES
) -> dict[str, Any]:
    """The IAM policy document (``Version`` 2012-10-17) for ``roles`` in ``account``."""
    region, prefix = settings.region, settings.queue_prefix
    queue_arn = f"arn:aws:sqs:{region}:{account}:{prefix}{{}}".format
    work = [queue_arn(name) for name in queue_names()]
    dlqs = [queue_arn(dlq_name(name)) for name in queue_names()]
    statements: list[dict[str, Any] | None] = []
    if "worker" in roles:
        topics = [f"arn:aws:sns:{region}:{account}:{name}" for name in topic_names(settings)]
        statements += [
            _statement("WorkerQueues", WORKER_QUEUE_ACTIONS, work + dlqs),
            _statement(
                "WorkerMonitoringQueues",
                MONITORING_QUEUE_ACTIONS,
                [queue_arn(EPHEMERAL_INFIX + "*")],
            ),
            _statement("WorkerMonitoringTopics", TOPIC_ACTIONS, topics),
            # kombu lists the prefix's queues at connect, and the sweeper lists monitoring queues.
            _statement("WorkerListQueues", ["sqs:ListQueues"], ["*"]),
            _statement(
                "WorkerBucketObjects",
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                [f"arn:aws:s3:::{settings.bucket}/*"],
            ),
            _statement("WorkerBucketList", ["s3:ListBucket"], [f"arn:aws:s3:::{settings.bucket}"]),
            _ses_statement(settings, region, account),
            _kms_statement(settings, region, account),
        ]
        if settings.sts_role_arn:
            statements.append(
                _statement("WorkerAssumeQueueRole", ["sts:AssumeRole"], [settings.sts_role_arn])
            )
    if "release" in roles:
        statements.append(_statement("ReleaseProvisionQueues", RELEASE_QUEUE_ACTIONS, work + dlqs))
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s is not None]}
