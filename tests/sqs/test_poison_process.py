"""A real `celery -A taskapp worker` process outlives messages that used to make it exit.

Before the fix, the first of these made the worker log "Unrecoverable error" and exit with
code 1; SQS then handed the message to the next worker, up to maxReceiveCount times.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from taskapp.queues import app_specs
from taskapp.sqs.admin.provision import provision
from taskapp.sqs.deadletter import read_reason
from tests.integration.processes import worker_process
from tests.sqs.hostile import (
    JPEG,
    claim_check_key,
    dead_letters_for,
    pointer_body,
    sqs_body,
    task_envelope,
)
from tests.support.queues import prefixed_app
from tests.support.waiting import result_or_whereabouts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_worker_process_survives_unreadable_messages_and_still_runs_ping(
    app: Any, sqs: Any, s3: Any, settings: Settings, provisioned: Any, tmp_path: Path
) -> None:
    # given a worker process on queues of its own
    prefix = settings.queue_prefix + "poison-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    producer = prefixed_app(app, prefix)
    url = sqs.get_queue_url(QueueName=prefix + "default")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=prefix + "default-dlq")["QueueUrl"]
    jpeg_key = claim_check_key(".jpg")
    s3.put_object(Bucket=settings.bucket, Key=jpeg_key, Body=JPEG)
    env = {**os.environ, "TASKAPP_QUEUE_PREFIX": prefix}
    log = tmp_path / "worker.log"
    with worker_process(env, "poison", log) as proc:
        # when messages that cannot become task requests arrive
        bodies = {
            pointer_body(settings.bucket, claim_check_key()),  # missing object
            pointer_body(settings.bucket, jpeg_key),  # not UTF-8
            pointer_body(settings.bucket, f"reports/{uuid.uuid4()}.csv"),  # foreign key
            sqs_body(task_envelope(app, body=[1, 2])),  # body of the wrong shape
            sqs_body(task_envelope(app, headers={"task": ["tests.record"]})),  # broken header
        }
        for body in bodies:
            sqs.send_message(QueueUrl=url, MessageBody=body)
        letters = dead_letters_for(sqs, dlq, bodies)
        # then the same process still runs tasks
        pong = result_or_whereabouts(producer.send_task("taskapp.ping"), timeout=30, interval=0.1)
        assert proc.poll() is None, log.read_text()[-3000:]
    assert pong == "pong"
    # and each message was dead-lettered once, as poison
    assert set(letters) == bodies
    assert all(len(found) == 1 for found in letters.values())
    reasons = [read_reason(found[0]["MessageAttributes"]) for found in letters.values()]
    assert {r.reason for r in reasons if r} == {"poison"}
    assert "Unrecoverable error" not in log.read_text()
