"""Least-privilege IAM policies for the configured queues, monitoring topics and bucket.

taskapp's, not the SQS extension's: the roles are taskapp's processes, the queues its plan
(``taskapp.queues``), and the worker's statements include SES for the email family.

``taskapp aws policy`` prints them. Statements are split by role, so each can be attached to
its own IAM role (``--role worker|flower|producer|release``):

* **worker** (celery workers): consume, send and dead-letter on the work queues and their
  DLQs (never create them: workers run with ``TASKAPP_PREDEFINED_QUEUES``); the per-process
  monitoring queues ``<prefix>mon-*`` and the two SNS topics ``<prefix>celeryev`` and
  ``<prefix>celery-pidbox`` (see ``taskapp/sqs/monitoring.py``); the objects of
  ``TASKAPP_BUCKET`` (claim checks are deleted once acknowledged); SES sending from
  ``TASKAPP_MAIL_FROM`` when the email backend is ``ses``; the KMS key of encrypted queues;
  and ``sts:AssumeRole`` on ``TASKAPP_STS_ROLE_ARN``.
* **flower**: queue depths of the work queues and DLQs (Broker page, ``/api/queues/length``),
  its own monitoring queues (events, remote-control replies) and the topics it reads from and
  sends remote control to. No S3, and it cannot take, delete or send task messages: Flower's
  "apply task" API needs the producer policy as well.
* **producer** (web apps, ``beat``, anything that only sends tasks): ``sqs:SendMessage`` on
  the work queues, ``sqs:GetQueueUrl`` on them and their DLQs (``TASKAPP_PREDEFINED_QUEUES``
  resolves both at start-up), ``s3:PutObject`` under the claim-check prefix, and publishing
  the ``task-sent`` event (``task_send_sent_event``) to ``<prefix>celeryev``, which kombu
  creates (and tags) if it is missing. Never a read or a delete.
* **release** (``taskapp queues provision``): create the queues and DLQs and set their
  attributes, nothing else.

``sns:Subscribe`` is granted only with a condition: protocol ``sqs`` and an endpoint among the
prefix's monitoring queues. Without it, whoever holds the role could subscribe any endpoint (an
HTTPS URL, an e-mail address, another account's queue) to the event topic and read every task
event. Only ``sqs:ListQueues`` (which IAM cannot scope to a queue), the monitoring queues (named
at run time) and the bucket's objects use wildcards.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

from config.settings import Settings
from taskapp.queues import dlq_name, queue_names
from taskapp.sqs.claimcheck import KEY_PREFIX
from taskapp.sqs.ephemeral import EPHEMERAL_INFIX

__all__ = ["ROLES", "build_policy", "policies", "topic_names"]

ROLES = ("worker", "flower", "producer", "release")

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
    "sqs:ListQueueTags",  # the sweeper reads leases (cleanup.run, on a worker)
    "sqs:SetQueueAttributes",  # the queue policy that lets SNS deliver
    "sqs:TagQueue",  # owner and lease tags
]
#: Flower's own event and reply queues: declared, subscribed, consumed without acks, deleted.
FLOWER_MONITORING_QUEUE_ACTIONS = [
    "sqs:CreateQueue",
    "sqs:DeleteMessage",
    "sqs:DeleteQueue",
    "sqs:GetQueueAttributes",  # the queue ARN to subscribe, the policy to extend
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SetQueueAttributes",
    "sqs:TagQueue",
]
TOPIC_ACTIONS = [
    "sns:CreateTopic",
    "sns:ListSubscriptionsByTopic",  # kombu drops subscriptions of deleted queues
    "sns:Publish",
    "sns:TagResource",  # kombu tags the topics it creates
    "sns:Unsubscribe",
]
#: A producer's ``task-sent`` event: kombu creates (and tags) the topic, then publishes.
EVENT_PUBLISH_ACTIONS = ["sns:CreateTopic", "sns:Publish", "sns:TagResource"]
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


def _kms_statement(
    settings: Settings, sid: str, region: str, account: str
) -> dict[str, Any] | None:
    key = settings.sqs_kms_key
    if not key or key == "alias/aws/sqs":
        return None  # the AWS managed key's policy already admits SQS callers of the account
    actions = ["kms:Decrypt", "kms:GenerateDataKey"]
    if key.startswith("arn:"):
        return _statement(sid, actions, [key])
    if _KEY_ID.match(key):
        return _statement(sid, actions, [f"arn:aws:kms:{region}:{account}:key/{key}"])
    return _statement(
        sid,
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


def _assume_statement(settings: Settings, sid: str) -> dict[str, Any] | None:
    if not settings.sts_role_arn:
        return None
    return _statement(sid, ["sts:AssumeRole"], [settings.sts_role_arn])


class _Arns:
    """The ARNs of one environment: queues, topics, bucket."""

    def __init__(self, settings: Settings, account: str) -> None:
        region, prefix = settings.region, settings.queue_prefix
        self.queue = f"arn:aws:sqs:{region}:{account}:{prefix}{{}}".format
        self.work = [self.queue(name) for name in queue_names()]
        self.dlqs = [self.queue(dlq_name(name)) for name in queue_names()]
        self.monitoring = self.queue(EPHEMERAL_INFIX + "*")
        topic = f"arn:aws:sns:{region}:{account}:{{}}".format
        self.topics = [topic(name) for name in topic_names(settings)]
        self.events = topic(topic_names(settings)[0])
        self.bucket = f"arn:aws:s3:::{settings.bucket}"


def _subscribe(sid: str, arns: _Arns) -> dict[str, Any]:
    """``sns:Subscribe`` on the topics, for the prefix's monitoring queues over SQS only."""
    return _statement(
        sid,
        ["sns:Subscribe"],
        arns.topics,
        Condition={
            "StringEquals": {"sns:Protocol": "sqs"},
            "StringLike": {"sns:Endpoint": arns.monitoring},
        },
    )


def _worker(settings: Settings, account: str, arns: _Arns) -> list[dict[str, Any] | None]:
    return [
        _statement("WorkerQueues", WORKER_QUEUE_ACTIONS, arns.work + arns.dlqs),
        _statement("WorkerMonitoringQueues", MONITORING_QUEUE_ACTIONS, [arns.monitoring]),
        _statement("WorkerMonitoringTopics", TOPIC_ACTIONS, arns.topics),
        _subscribe("WorkerSubscribeMonitoringQueues", arns),
        # kombu lists the prefix's queues at connect, and the sweeper lists monitoring queues.
        _statement("WorkerListQueues", ["sqs:ListQueues"], ["*"]),
        _statement(
            "WorkerBucketObjects",
            ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            [arns.bucket + "/*"],
        ),
        _statement("WorkerBucketList", ["s3:ListBucket"], [arns.bucket]),
        _ses_statement(settings, settings.region, account),
        _kms_statement(settings, "WorkerQueueKey", settings.region, account),
        _assume_statement(settings, "WorkerAssumeQueueRole"),
    ]


def _flower(settings: Settings, arns: _Arns) -> list[dict[str, Any] | None]:
    return [
        _statement(
            "FlowerQueueDepths",
            ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
            arns.work + arns.dlqs,
        ),
        _statement("FlowerListQueues", ["sqs:ListQueues"], ["*"]),
        _statement("FlowerMonitoringQueues", FLOWER_MONITORING_QUEUE_ACTIONS, [arns.monitoring]),
        _statement("FlowerMonitoringTopics", TOPIC_ACTIONS, arns.topics),
        _subscribe("FlowerSubscribeMonitoringQueues", arns),
        _assume_statement(settings, "FlowerAssumeQueueRole"),
    ]


def _producer(settings: Settings, account: str, arns: _Arns) -> list[dict[str, Any] | None]:
    return [
        _statement("ProducerSendTasks", ["sqs:GetQueueUrl", "sqs:SendMessage"], arns.work),
        _statement("ProducerQueueUrls", ["sqs:GetQueueUrl"], arns.dlqs),
        _statement("ProducerTaskEvents", EVENT_PUBLISH_ACTIONS, [arns.events]),
        _statement("ProducerClaimChecks", ["s3:PutObject"], [f"{arns.bucket}/{KEY_PREFIX}*"]),
        _kms_statement(settings, "ProducerQueueKey", settings.region, account),
        _assume_statement(settings, "ProducerAssumeQueueRole"),
    ]


def build_policy(
    settings: Settings, account: str, roles: tuple[str, ...] = ROLES
) -> dict[str, Any]:
    """The IAM policy document (``Version`` 2012-10-17) for ``roles`` in ``account``."""
    arns = _Arns(settings, account)
    statements: list[dict[str, Any] | None] = []
    if "worker" in roles:
        statements += _worker(settings, account, arns)
    if "flower" in roles:
        statements += _flower(settings, arns)
    if "producer" in roles:
        statements += _producer(settings, account, arns)
    if "release" in roles:
        statements.append(
            _statement("ReleaseProvisionQueues", RELEASE_QUEUE_ACTIONS, arns.work + arns.dlqs)
        )
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s is not None]}


def policies(settings: Settings, account: str) -> dict[str, dict[str, Any]]:
    """One policy document per role, by role name (each to be attached to its own IAM role)."""
    return {role: build_policy(settings, account, (role,)) for role in ROLES}
