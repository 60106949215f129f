"""The remote-control reply path: a reply queue is drained by its caller, never by an event loop.

kombu's SQS channel takes the process-wide event loop (``get_event_loop()``) and, on every
``basic_consume``, schedules an asynchronous long poll of the queue on it. In a process that
also runs a worker (Celery's own integration suite, an in-process test worker, a task calling
``inspect()``), a caller's reply queue was then polled twice: by the caller's own blocking
``drain_events`` and by the worker's loop, which took the reply about half the time and handed
it over only after the caller's 1 s had run out (``bench/celery_suite.py``: 10 of 20
``inspect().ping()`` unanswered). This test gives the channel a loop of its own, run once by hand,
so the session worker's loop is never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Consumer, Exchange, Queue
from kombu.asynchronous import Hub

from taskapp.app import app


@pytest.fixture
def channel(provisioned: list[Any]) -> Iterator[Any]:
    """A channel of the app's transport whose event loop is a private hub (a worker's stand-in)."""
    with app.connection_for_write() as conn:
        chan = conn.channel()
        chan.hub = Hub()
        try:
            yield chan
        finally:
            chan.close()


def test_a_reply_queue_is_polled_by_its_caller_and_not_by_the_event_loop(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a caller's reply queue (kombu's mailbox naming) and a work queue, both consumed on a
    # channel that has an event loop
    oid = str(uuid.uuid4())
    reply = Queue(
        f"{oid}.reply.celery.pidbox",
        Exchange("reply.celery.pidbox", "direct"),
        routing_key=oid,
        auto_delete=True,
    )
    work = Queue("default", routing_key="default")
    polled: list[str] = []
    # the loop's poll, recorded instead of sent (pycurl would need the loop to keep running)
    monkeypatch.setattr(
        channel, "_get_bulk_async", lambda queue, callback=None: polled.append(queue)
    )  # noqa: E501
    consumer = Consumer(channel, [reply, work], no_ack=True, callbacks=[lambda *_: None])
    consumer.consume()
    try:
        # when the event loop runs what consuming scheduled
        channel.hub.run_once()
        # then it polls the work queue only: the reply is left to the caller's drain_events
        assert polled == ["default"]
    finally:
        consumer.cancel()
        channel.queue_delete(reply.name)


def test_a_callers_reply_queue_costs_one_request_to_declare_and_none_to_redeclare(
    channel: Any,
) -> None:
    # given a fresh reply queue and a record of every SQS request of the channel
    oid = str(uuid.uuid4())
    reply = Queue(
        f"{oid}.reply.celery.pidbox",
        Exchange("reply.celery.pidbox", "direct"),
        routing_key=oid,
        auto_delete=True,
    )
    requests: list[str] = []
    channel.sqs().meta.events.register(
        "before-call.sqs", lambda model, **_: requests.append(model.name)
    )
    try:
        # when kombu's mailbox declares it, before the request and again to consume the replies
        reply(channel).declare()
        reply(channel).declare()
        # then it is created without asking whether a name minted here exists, and its length
        # (which the mailbox never reads) is not asked for
        assert requests == ["CreateQueue"]
    finally:
        channel.queue_delete(reply.name)


def test_a_worker_replies_with_one_request_and_keeps_no_url_of_the_callers_queue(
    channel: Any,
) -> None:
    # given a caller's reply queue, and a worker's channel that has never seen it
    oid = str(uuid.uuid4())
    reply = Queue(
        f"{oid}.reply.celery.pidbox",
        Exchange("reply.celery.pidbox", "direct"),
        routing_key=oid,
        auto_delete=True,
    )
    reply(channel).declare()
    sqs_name = channel.canonical_queue_name(reply.name)
    worker = channel.connection.create_channel(channel.connection)  # a second channel
    requests: list[str] = []
    worker.sqs().meta.events.register(
        "before-call.sqs", lambda model, **_: requests.append(model.name)
    )
    try:
        # when the worker replies (the routing key names the SQS queue: see _address_reply)
        worker.typeof("reply.celery.pidbox").deliver(
            {"body": '{"ok": "pong"}', "properties": {}}, "reply.celery.pidbox", sqs_name
        )
        # then the reply is sent without asking SQS for the queue's URL, and arrives
        assert requests == ["SendMessage"]
        assert sqs_name not in worker._queue_cache
        got = channel.sqs().receive_message(
            QueueUrl=channel._new_queue(reply.name), WaitTimeSeconds=5
        )
        assert len(got.get("Messages", [])) == 1
    finally:
        worker.close()
        channel.queue_delete(reply.name)


def test_a_reply_to_a_caller_that_left_is_dropped(channel: Any) -> None:
    # given a reply queue name that no queue has (the caller deleted it)
    gone = channel.canonical_queue_name(f"{uuid.uuid4()}.reply.celery.pidbox")
    oid = str(uuid.uuid4())
    mine = Queue(f"{oid}.reply.celery.pidbox", Exchange("reply.celery.pidbox", "direct"), oid)
    mine(channel).declare()  # so the worker can guess URLs from a queue of its own
    worker = channel.connection.create_channel(channel.connection)  # a second channel
    try:
        # when the worker replies to it, then nothing is raised and nothing is kept
        worker.typeof("reply.celery.pidbox").deliver(
            {"body": "{}", "properties": {}}, "reply.celery.pidbox", gone
        )
        assert gone not in worker._queue_cache
    finally:
        worker.close()
        channel.queue_delete(mine.name)
