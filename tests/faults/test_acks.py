"""Acks that could not be sent are retried while their receipt handles live, then left to SQS."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from config.settings import Settings
from taskapp.aws.sqs import queue_depth
from taskapp.sqs.acks import AckBatcher
from tests.support.faultproxy import FaultProxy, Mode
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(sqs: Any, settings: Settings) -> Iterator[tuple[FaultProxy, Any, str, list[str]]]:
    """A proxy in front of moto, an SQS client through it, a queue and 3 received handles."""
    url = sqs.create_queue(QueueName=f"{settings.queue_prefix}ackfault-{uuid.uuid4().hex[:8]}")[
        "QueueUrl"
    ]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)]
    )
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=120)
    handles = [m["ReceiptHandle"] for m in got["Messages"]]
    assert len(handles) == 3
    moto = urlsplit(os.environ["AWS_ENDPOINT_URL"])
    with FaultProxy((moto.hostname or "127.0.0.1", moto.port or 80)) as proxy:
        client = boto3.client(
            "sqs",
            endpoint_url=proxy.url,
            region_name=sqs.meta.region_name,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )
        yield proxy, client, url, handles
    sqs.delete_queue(QueueUrl=url)


def test_acks_failing_through_an_outage_are_deleted_once_it_ends(
    proxied: tuple[FaultProxy, Any, str, list[str]], sqs: Any
) -> None:
    proxy, client, url, handles = proxied
    attempts: list[str] = []
    client.meta.events.register(
        "before-send.sqs.DeleteMessageBatch", lambda **_: attempts.append("call")
    )
    # given SQS connections being reset
    proxy.set(Mode.RESET)
    batcher = AckBatcher(lambda queue: client, interval=0.05, lifetime=60)
    # when three messages are acknowledged and their deletes fail three times
    for handle in handles:
        batcher.add(None, url, handle)
    wait_for(lambda: len(attempts) >= 3, "three failed delete attempts", timeout=30)
    proxy.set(Mode.PASS)
    # then, once SQS answers again, they are deleted without anyone acking again
    wait_for(lambda: queue_depth(sqs, url).total == 0, "the acked messages to be deleted", 30)
    batcher.close()


def test_acks_are_left_to_sqs_once_their_handles_expire(
    proxied: tuple[FaultProxy, Any, str, list[str]], sqs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, client, url, handles = proxied
    # given acks whose receipt handles live half a second, during an outage
    proxy.set(Mode.RESET)
    batcher = AckBatcher(lambda queue: client, interval=0.05, lifetime=0.5)
    with caplog.at_level(logging.WARNING, logger="taskapp.sqs.acks"):
        for handle in handles:
            batcher.add(None, url, handle)
        # when the handles expire, the flusher gives up on them
        wait_for(lambda: "gave up deleting 3" in caplog.text, "the flusher to give up", 30)
    # then nothing is sent once SQS answers again: the messages are SQS's to redeliver
    proxy.set(Mode.PASS)
    batcher.close()
    assert queue_depth(sqs, url).total == 3


def test_an_ack_is_retried_for_as_long_as_its_queue_keeps_the_message_invisible(
    proxied: tuple[FaultProxy, Any, str, list[str]], sqs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The soak's find: a reports message (VisibilityTimeout 930 s) acked before its first
    # heartbeat renewal was given up after three heartbeat intervals, during a 30 s SQS
    # outage, and came back 15 minutes later to be absorbed as a duplicate.
    proxy, client, url, handles = proxied
    attempts: list[str] = []
    client.meta.events.register(
        "before-send.sqs.DeleteMessageBatch", lambda **_: attempts.append("call")
    )
    # given acks the batcher alone would give up on after half a second, but whose queue keeps
    # them invisible for 120 s, during an outage
    proxy.set(Mode.RESET)
    batcher = AckBatcher(lambda queue: client, interval=0.05, lifetime=0.5)
    with caplog.at_level(logging.WARNING, logger="taskapp.sqs.acks"):
        for handle in handles:
            batcher.add(None, url, handle, lifetime=120)
        # when the outage outlasts the batcher's own lifetime (three more failed attempts,
        # 0.25 + 0.5 + 1 s of backoff)
        wait_for(lambda: len(attempts) >= 4, "four failed delete attempts", timeout=30)
        assert "gave up" not in caplog.text
    # then, once SQS answers again, they are deleted
    proxy.set(Mode.PASS)
    wait_for(lambda: queue_depth(sqs, url).total == 0, "the acked messages to be deleted", 30)
    batcher.close()
