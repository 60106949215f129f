"""Provisioning gives every queue and DLQ SQS's full 1 MiB, also a queue created smaller."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import Settings
from taskapp.queues import app_specs, route_task
from taskapp.sqs.admin.provision import provision
from taskapp.sqs.claimcheck import POINTER_CLASS
from tests.support.queues import drain, prefixed_app

pytestmark = pytest.mark.integration

#: SQS's documented default MaximumMessageSize (256 KiB), and its ceiling before August 2025.
OLD_DEFAULT = 262_144
#: SQS's largest message (1 MiB), which the claim-check threshold assumes.
MAX_MESSAGE_SIZE = 1_048_576


def _max_size(sqs: Any, name: str) -> int:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
    return int(attrs["Attributes"]["MaximumMessageSize"])


def test_provisioning_raises_queues_created_at_256_kib_and_a_400_kb_task_then_fits(
    provisioned: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    # given an environment whose queues and DLQs all exist already, at the old 256 KiB
    env = settings.model_copy(update={"queue_prefix": settings.queue_prefix + "size-"})
    specs = app_specs(app)
    for spec in specs:
        for name in (spec.name, spec.dlq):
            fifo = {"FifoQueue": "true"} if spec.fifo else {}
            sqs.create_queue(
                QueueName=env.queue_prefix + name,
                Attributes={"MaximumMessageSize": str(OLD_DEFAULT), **fifo},
            )
    # when it is provisioned
    changes = provision(sqs, env, specs)
    # then every queue and DLQ takes 1 MiB, and provisioning says it changed that
    assert len(changes) == 2 * len(specs)
    for change in changes:
        assert change.action == "updated"
        assert "MaximumMessageSize" in change.attributes
        assert _max_size(sqs, change.queue) == MAX_MESSAGE_SIZE
    # and a second run finds nothing to change
    assert {c.action for c in provision(sqs, env, specs)} == {"unchanged"}
    # and a 400 KB task, under the claim-check threshold, travels in the message itself
    payload = "p" * 400_000
    producer = prefixed_app(app, env.queue_prefix)
    producer.send_task("tests.record", args=[payload])
    queue = route_task("tests.record", (), {}, {})["queue"]
    url = sqs.get_queue_url(QueueName=env.queue_prefix + queue)["QueueUrl"]
    [message] = drain(sqs, url, wait=5, expect=1)
    assert POINTER_CLASS not in message["Body"]
    assert len(message["Body"]) > len(payload) > OLD_DEFAULT
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_provisioning_creates_queues_and_dlqs_at_1_mib_explicitly(
    provisioned: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    # given a fresh environment (moto creates queues at 1 MiB by default; SQS documents 256 KiB,
    # so provisioning must ask for it)
    env = settings.model_copy(update={"queue_prefix": settings.queue_prefix + "fresh-"})
    # when it is provisioned
    changes = provision(sqs, env, app_specs(app))
    # then every queue and DLQ was created with 1 MiB asked for
    for change in changes:
        assert change.action == "created"
        assert "MaximumMessageSize" in change.attributes
        assert _max_size(sqs, change.queue) == MAX_MESSAGE_SIZE
