"""The foundation through a real worker on the moto server: round trip, routing, dead letters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.settings import Settings
from taskapp.queues import app_specs, queue_names
from taskapp.sqs.admin.provision import provision
from tests.support.queues import drain, prefixed_app, queue_url
from tests.support.waiting import result_or_whereabouts, wait_for

pytestmark = pytest.mark.integration

#: Every task name that is API, and the queue it must land on.
API_ROUTES = {
    "taskapp.ping": "default",
    "email.send": "email",
    "images.thumbnails": "images",
    "cleanup.run": "cleanup",
    "reports.generate": "reports",
}


def test_ping_round_trip_through_sqs(worker: Any, app: Any) -> None:
    # given the session worker consuming from SQS
    # when a producer enqueues taskapp.ping by name
    result = app.send_task("taskapp.ping")
    # then the worker answers through the result backend
    assert result_or_whereabouts(result, timeout=30, interval=0.05) == "pong"


@pytest.fixture(scope="module")
def probe(app: Any, sqs: Any, settings: Settings) -> Any:
    """A producer with the app's routing but its own queue prefix, which no worker consumes."""
    prefix = settings.queue_prefix + "probe-"
    probe_app = prefixed_app(app, prefix)
    probe_settings = settings.model_copy(update={"queue_prefix": prefix})
    provision(sqs, probe_settings, app_specs(app))
    return probe_app, probe_settings


@pytest.mark.parametrize(("name", "queue"), sorted(API_ROUTES.items()))
@pytest.mark.parametrize("priority", [None, "high"])
def test_every_task_name_lands_on_its_queue_and_lane(
    probe: Any, sqs: Any, name: str, queue: str, priority: Any
) -> None:
    probe_app, probe_settings = probe
    expected = queue if priority is None or queue == "default" else f"{queue}-high"
    # when a producer that knows only the name sends it, with or without the high lane
    options = {"priority": priority} if priority else {}
    sent = probe_app.send_task(name, args=["routing-probe"], **options)
    # then the message is in exactly the expected SQS queue, and no other
    found = {
        other: [m for m in drain(sqs, queue_url(sqs, probe_settings, other))]
        for other in queue_names()
    }
    holders = {other for other, messages in found.items() if messages}
    assert holders == {expected}
    (message,) = found[expected]
    assert json.loads(_decode(message["Body"]))["headers"]["id"] == sent.id
    sqs.delete_message(
        QueueUrl=queue_url(sqs, probe_settings, expected), ReceiptHandle=message["ReceiptHandle"]
    )


def test_message_failing_max_receives_times_lands_in_its_dlq(
    worker: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    # given a task whose every delivery is rejected, on the default queue (max receives = 3)
    result = app.send_task("tests.reject")
    dlq = queue_url(sqs, settings, "default-dlq")
    # when the worker has received it TASKAPP_MAX_RECEIVES times
    dead = wait_for(
        lambda: drain(sqs, dlq, wait=1), "the rejected message in the DLQ", timeout=60, interval=0
    )
    # then SQS moved it to the default queue's DLQ, with its receive count at the limit
    assert len(dead) == 1, dead
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= settings.max_receives
    body = json.loads(_decode(dead[0]["Body"]))
    assert body["headers"]["id"] == result.id
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=dead[0]["ReceiptHandle"])


def test_provision_twice_is_a_no_op(
    provisioned: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    # given queues provisioned once (the session fixture)
    # when provisioning runs again
    changes = provision(sqs, settings, app_specs(app))
    # then every queue and DLQ is reported unchanged
    assert {c.action for c in changes} == {"unchanged"}
    assert len(changes) == 2 * len(queue_names())


def test_queue_attributes_follow_the_plan(
    provisioned: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    # given the derived plan
    for spec in app_specs(app):
        # then each queue's visibility covers its hard limit, long polls, and redrives to its DLQ
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url(sqs, settings, spec.name), AttributeNames=["All"]
        )["Attributes"]
        assert int(attrs["VisibilityTimeout"]) == spec.visibility_timeout > spec.hard_time_limit
        assert attrs["ReceiveMessageWaitTimeSeconds"] == str(settings.wait_time_seconds)
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(settings.queue_prefix + spec.dlq)
        assert int(redrive["maxReceiveCount"]) == settings.max_receives


def _decode(body: str) -> str:
    import base64

    return base64.b64decode(body).decode()


def test_kms_key_setting_encrypts_every_queue_and_dlq(
    app: Any, sqs: Any, settings: Settings
) -> None:
    # given an environment of its own with a KMS key configured
    kms = settings.model_copy(
        update={"queue_prefix": settings.queue_prefix + "kms-", "sqs_kms_key": "alias/aws/sqs"}
    )
    # when it is provisioned
    changes = provision(sqs, kms, app_specs(app))
    # then every queue and DLQ carries the key
    for change in changes:
        url = sqs.get_queue_url(QueueName=change.queue)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["KmsMasterKeyId"])
        assert attrs["Attributes"]["KmsMasterKeyId"] == "alias/aws/sqs"


def test_predefined_queues_resolve_every_provisioned_url(
    provisioned: Any, sqs: Any, settings: Settings
) -> None:
    from taskapp.queues import dlq_name
    from taskapp.sqs.admin.provision import predefined_queues

    # when the worker's predefined queues are resolved (GetQueueUrl only)
    before = sqs.list_queues(QueueNamePrefix=settings.queue_prefix)["QueueUrls"]
    resolved = predefined_queues(sqs, settings.queue_prefix, queue_names())
    # then every work queue and DLQ maps to its provisioned URL, and nothing was created
    for name in queue_names():
        for sqs_name in (settings.queue_prefix + name, settings.queue_prefix + dlq_name(name)):
            assert resolved[sqs_name]["url"] == sqs.get_queue_url(QueueName=sqs_name)["QueueUrl"]
    assert sqs.list_queues(QueueNamePrefix=settings.queue_prefix)["QueueUrls"] == before
