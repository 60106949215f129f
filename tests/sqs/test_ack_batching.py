"""Acknowledgements are coalesced into DeleteMessageBatch, and only after the task finished.

Calls are counted with botocore event hooks on the real clients (the session worker's, or a
connection's own), against the session moto server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import signals
from kombu import Exchange, Producer, Queue

from config.settings import Settings
from taskapp.sqs.acks import AckBatcher
from tests.support.queues import queue_url
from tests.support.waiting import result_or_whereabouts, wait_for
from tests.tasks import record

pytestmark = pytest.mark.integration


@dataclass
class Calls:
    """SQS delete calls seen on one client: (monotonic time, action, receipt handles)."""

    seen: list[tuple[float, str, list[str]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "DeleteMessageBatch":
            handles = [e["ReceiptHandle"] for e in params["Entries"]]
        else:
            handles = [params["ReceiptHandle"]]
        self.seen.append((time.monotonic(), model.name, handles))

    def of(self, action: str) -> list[tuple[float, str, list[str]]]:
        return [call for call in self.seen if call[1] == action]

    def deleted_at(self) -> dict[str, float]:
        return {h: at for at, _, handles in self.seen for h in handles}


def _hooked(client: Any) -> Iterator[Calls]:
    calls = Calls()
    events = (
        "before-parameter-build.sqs.DeleteMessage",
        "before-parameter-build.sqs.DeleteMessageBatch",
    )
    for event in events:
        client.meta.events.register(event, calls)
    try:
        yield calls
    finally:
        for event in events:
            client.meta.events.unregister(event, calls)


@pytest.fixture
def worker_deletes(worker: Any) -> Iterator[Calls]:
    """DeleteMessage/DeleteMessageBatch calls of the session worker's task channel."""
    yield from _hooked(worker.consumer.task_consumer.channel.sqs())


@pytest.fixture
def lifecycle(worker: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """Per task id: the receipt handle it arrived with and when its task body finished."""
    seen: dict[str, dict[str, Any]] = {}

    def received(request: Any, **_: Any) -> None:
        info = request._message.delivery_info
        seen.setdefault(request.id, {})["handle"] = info["sqs_message"]["ReceiptHandle"]

    def finished(task_id: str, **_: Any) -> None:
        seen.setdefault(task_id, {})["finished"] = time.monotonic()

    signals.task_received.connect(received, weak=False)
    signals.task_postrun.connect(finished, weak=False)
    yield seen
    signals.task_received.disconnect(received)
    signals.task_postrun.disconnect(finished)


def test_acks_are_coalesced_and_follow_the_task(
    worker: Any, worker_deletes: Calls, lifecycle: dict[str, dict[str, Any]]
) -> None:
    # given 20 tasks, a few of which run for a while
    tag = uuid.uuid4().hex
    results = [record.delay(f"{tag}-{i}", sleep=0.3 if i % 5 == 0 else 0) for i in range(20)]
    # when they all finished
    for result in results:
        result_or_whereabouts(result, timeout=30, interval=0.02)
    ids = [r.id for r in results]
    handles = {lifecycle[i]["handle"]: i for i in ids}
    wait_for(
        lambda: set(handles) <= set(worker_deletes.deleted_at()),
        "every message to be deleted",
        timeout=5,
    )
    # then every message was deleted by DeleteMessageBatch, never one DeleteMessage per ack
    assert worker_deletes.of("DeleteMessage") == []
    batches = [c for c in worker_deletes.of("DeleteMessageBatch") if set(c[2]) & set(handles)]
    assert all(len(c[2]) <= 10 for c in batches)
    assert len(batches) < len(handles)
    # and no message was deleted before its task's body had returned
    deleted_at = worker_deletes.deleted_at()
    for handle, task_id in handles.items():
        assert deleted_at[handle] >= lifecycle[task_id]["finished"]


def test_a_lone_ack_is_flushed_without_waiting_for_a_full_batch(
    worker: Any, worker_deletes: Calls, lifecycle: dict[str, dict[str, Any]]
) -> None:
    # given one task on an otherwise idle worker
    result = record.delay(uuid.uuid4().hex)
    # when it finished
    result_or_whereabouts(result, timeout=30, interval=0.02)
    handle = lifecycle[result.id]["handle"]
    # then its message is deleted by the flusher on its own, in a batch of one
    wait_for(lambda: handle in worker_deletes.deleted_at(), "the lone message's delete", timeout=5)
    assert worker_deletes.of("DeleteMessage") == []


def _depth(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attrs[names[0]]), int(attrs[names[1]])


def test_closing_the_channel_flushes_pending_acks(
    app: Any, provisioned: list[Any], sqs: Any, settings: Settings
) -> None:
    # given a channel whose flush interval is far away, and three messages on a scratch queue
    # (basic_get only: a consumer would poll on the in-process worker's event loop)
    name = f"ackclose-{uuid.uuid4().hex[:8]}"
    with app.connection_for_write(transport_options={"ack_flush_interval": 60}) as conn:
        channel = conn.default_channel
        queue = Queue(name, Exchange(name), routing_key=name)(channel)
        queue.declare()
        producer = Producer(channel, exchange=queue.exchange, routing_key=name)
        for i in range(3):
            producer.publish({"n": i})
        url = queue_url(sqs, settings, name)
        hooked = _hooked(channel.sqs())
        calls = next(hooked)
        # when they are received and acknowledged
        for _ in range(3):
            message = wait_for(lambda: queue.get(no_ack=False), "a message", timeout=10)
            message.ack()
        # then nothing is deleted yet: they are only in flight
        assert calls.seen == []
        assert _depth(sqs, url) == (0, 3)
        # when the channel closes
        channel.close()
    next(hooked, None)
    # then all three were deleted, in one DeleteMessageBatch
    assert [(action, len(h)) for _, action, h in calls.seen] == [("DeleteMessageBatch", 3)]
    assert _depth(sqs, url) == (0, 0)
    sqs.delete_queue(QueueUrl=url)


def test_a_refused_entry_is_not_retried_and_the_rest_deleted(
    provisioned: list[Any], sqs: Any, settings: Settings
) -> None:
    # given two received messages and a receipt handle SQS will refuse
    url = sqs.create_queue(QueueName=f"{settings.queue_prefix}ackretry-{uuid.uuid4().hex[:8]}")[
        "QueueUrl"
    ]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(2)]
    )
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    good = [m["ReceiptHandle"] for m in got["Messages"]]
    assert len(good) == 2
    calls_cm = _hooked(sqs)
    calls = next(calls_cm)
    try:
        # when all three are acknowledged through the batcher and it closes
        batcher = AckBatcher(lambda queue: sqs, interval=0.05)
        for handle in [*good, "not-a-receipt-handle"]:
            batcher.add(None, url, handle)
        batcher.close()
    finally:
        next(calls_cm, None)
    # then the valid ones went in the first call, and the refused one (a sender fault: its
    # handle is invalid, so retrying cannot help) was tried exactly once
    batch_calls = calls.of("DeleteMessageBatch")
    assert set(good) <= set(batch_calls[0][2])
    assert sum(h.count("not-a-receipt-handle") for _, _, h in batch_calls) == 1
    assert _depth(sqs, url) == (0, 0)
    sqs.delete_queue(QueueUrl=url)
