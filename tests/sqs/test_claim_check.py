"""Large payloads travel through S3 (claim check) and leave nothing behind."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import pytest

from config.settings import Settings
from taskapp.sqs.claimcheck import POINTER_CLASS, SIZE_ATTRIBUTE
from tests.support.queues import drain, queue_url
from tests.support.waiting import result_or_whereabouts, wait_for
from tests.tasks import digest

pytestmark = pytest.mark.integration


def _claim_checks(s3: Any, settings: Settings) -> list[str]:
    listed = s3.list_objects_v2(Bucket=settings.bucket, Prefix="claim-check/")
    return [obj["Key"] for obj in listed.get("Contents", [])]


def test_five_mib_argument_round_trips_and_leaves_no_object(
    worker: Any, s3: Any, settings: Settings
) -> None:
    # given a 5 MiB argument, five times what SQS accepts
    data = secrets.token_hex(5 * 1024 * 1024 // 2)
    before = set(_claim_checks(s3, settings))
    # when it is sent as a task
    result = digest.delay(data)
    # then the worker sees exactly the payload
    assert result_or_whereabouts(result, timeout=60, interval=0.1) == {
        "length": len(data),
        "sha256": hashlib.sha256(data.encode()).hexdigest(),
    }
    # and the S3 object is gone once the message was acknowledged
    wait_for(
        lambda: not set(_claim_checks(s3, settings)) - before,
        "the claim-check object to be deleted",
        timeout=10,
        interval=0.2,
    )


def test_dead_lettered_big_message_keeps_its_pointer_and_object(
    worker: Any, s3: Any, sqs: Any, settings: Settings
) -> None:
    data = "x" * (2 * 1024 * 1024)
    result = digest.delay(data, fail=True)
    with pytest.raises(Exception, match="refusing this payload"):
        result_or_whereabouts(result, timeout=60, interval=0.1)
    dlq = queue_url(sqs, settings, "default-dlq")
    letters = wait_for(
        lambda: [m for m in drain(sqs, dlq, wait=1) if POINTER_CLASS in m["Body"]],
        "the pointer in the DLQ",
        timeout=15,
        interval=0,
    )
    # then the DLQ holds the pointer (Extended Client format), and the object is still there
    assert len(letters) == 1
    _, target = json.loads(letters[0]["Body"])
    assert int(letters[0]["MessageAttributes"][SIZE_ATTRIBUTE]["StringValue"]) > len(data)
    s3.head_object(Bucket=target["s3BucketName"], Key=target["s3Key"])
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=letters[0]["ReceiptHandle"])
    s3.delete_object(Bucket=target["s3BucketName"], Key=target["s3Key"])
