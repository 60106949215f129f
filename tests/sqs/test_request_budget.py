"""SQS requests a worker spends besides its tasks' own: start-up listings and declares
(``taskapp/sqs/queue_cache.py``) and the size of its receives (``taskapp/sqs/receives.py``).

Calls are seen by wrapping botocore's ``_make_api_call`` (every call still goes to the session
moto server), filtered to a queue prefix of the test's own so the in-process session worker's
calls are not counted. Nothing here consumes on the event loop.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.client import BaseClient
from hypothesis import given
from hypothesis import strategies as st
from kombu import Exchange, Producer, Queue
from vine import promise

from taskapp.sqs.plumbing import BATCH
from taskapp.sqs.receives import receive_size

pytestmark = pytest.mark.integration


class SeenCalls:
    """SQS operations made by any botocore client of this process that name ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seen: list[str] = []

    def names(self, params: dict[str, Any]) -> bool:
        target = str(params.get("QueueUrl") or params.get("QueueNamePrefix") or "")
        return target.rsplit("/", 1)[-1].startswith(self.prefix)

    def of(self, operation: str) -> list[str]:
        return [name for name in self.seen if name == operation]


@pytest.fixture
def prefix() -> str:
    return f"budget{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def calls(prefix: str, monkeypatch: pytest.MonkeyPatch) -> SeenCalls:
    seen = SeenCalls(prefix)
    original = BaseClient._make_api_call

    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if seen.names(params):
            seen.seen.append(operation)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    return seen


def _connection(app: Any, prefix: str) -> Any:
    return app.connection_for_write(transport_options={"queue_name_prefix": prefix})


def _cleanup(sqs: Any, prefix: str) -> None:
    for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)


def test_the_channels_of_a_process_list_their_queues_once(
    app: Any, provisioned: list[Any], sqs: Any, prefix: str, calls: SeenCalls
) -> None:
    # given a queue under a fresh prefix, and one connection whose channel listed the prefix
    url = sqs.create_queue(QueueName=f"{prefix}work")["QueueUrl"]
    with _connection(app, prefix) as first:
        first.channel()
        assert calls.of("ListQueues") == ["ListQueues"]
        # when further connections and channels open (a worker's consumer, remote control,
        # events, its pool's producers)
        with _connection(app, prefix) as second:
            channel = second.channel()
            second.channel()
            # then none lists again, and each knows the queue's URL
            assert calls.of("ListQueues") == ["ListQueues"]
            assert channel._new_queue("work") == url
    _cleanup(sqs, prefix)


def test_queues_missing_from_the_listing_are_still_found_or_created(
    app: Any, provisioned: list[Any], sqs: Any, prefix: str, calls: SeenCalls
) -> None:
    # given a prefix already listed by this process
    with _connection(app, prefix) as conn:
        conn.channel()
    # when a queue appears after the listing, and another is deleted through a channel
    late = sqs.create_queue(QueueName=f"{prefix}late")["QueueUrl"]
    with _connection(app, prefix) as conn:
        channel = conn.channel()
        channel.queue_declare("gone")
        channel.queue_delete("gone")
    with _connection(app, prefix) as conn:
        channel = conn.channel()
        # then a new connection finds the late one and re-creates the deleted one, and both
        # take messages
        channel.queue_declare("late")
        channel.queue_declare("gone")
        for name in ("late", "gone"):
            channel.basic_publish(channel.prepare_message(name), exchange="", routing_key=name)
    gone = sqs.get_queue_url(QueueName=f"{prefix}gone")["QueueUrl"]
    for url in (late, gone):
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")
    _cleanup(sqs, prefix)


def test_a_consumers_declare_asks_sqs_for_no_message_count(
    app: Any, provisioned: list[Any], sqs: Any, prefix: str, calls: SeenCalls
) -> None:
    # given a queue holding two messages
    with _connection(app, prefix) as conn:
        channel = conn.channel()
        queue = Queue("counted", Exchange("counted"), routing_key="counted")(channel)
        queue.declare()
        producer = Producer(channel, exchange=queue.exchange, routing_key="counted")
        for n in range(2):
            producer.publish({"n": n})
        # when a consumer declares it (what Celery's consumer does at every start)
        calls.seen.clear()
        queue.declare()
        # then SQS is not asked for its attributes
        assert calls.of("GetQueueAttributes") == []
        # and a passive declare ("how deep is it?") still answers from SQS
        assert channel.queue_declare("counted", passive=True).message_count == 2
    _cleanup(sqs, prefix)


def test_a_busy_channel_waits_until_a_full_receive_fits(
    app: Any, provisioned: list[Any], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a channel with a prefetch count of 20
    with _connection(app, prefix) as conn:
        channel = conn.channel()
        channel.qos.prefetch_count = 20
        receives: list[int] = []
        monkeypatch.setattr(
            channel, "_get_async", lambda queue, count, callback=None: receives.append(count)
        )
        empty: list[Any] = []
        # when it holds 12 messages (8 slots free), then it sends no receive and looks again
        for tag in range(12):
            channel.qos.append(object(), f"tag-{tag}")
        channel._get_bulk_async("default", callback=promise(empty.append))
        assert receives == []
        assert empty == [[]]
        # when it holds 10 (10 free), then one receive asks for 10
        for tag in range(2):
            channel.qos.ack(f"tag-{tag}")
        channel._get_bulk_async("default", callback=promise(empty.append))
        assert receives == [BATCH]


def test_taskapps_prefetch_fills_every_receive_of_a_busy_worker(app: Any) -> None:
    # given taskapp's worker with the smallest pool issue 16's race uses (-c 2)
    prefetch = app.conf.worker_prefetch_multiplier * 2
    # then whatever it holds, it either waits or asks for 10 messages
    assert {receive_size(prefetch, held) for held in range(prefetch + 1)} == {0, BATCH}


@given(prefetch=st.integers(0, 200), held=st.integers(0, 250))
def test_receive_sizes(prefetch: int, held: int) -> None:
    size = receive_size(prefetch, held)
    free = prefetch - held if prefetch else BATCH
    # never more than SQS gives or than the free slots
    assert 0 <= size <= min(max(free, 0), BATCH)
    # a worker holding nothing always receives
    if held == 0:
        assert size == min(prefetch or BATCH, BATCH)
    # a prefetch of 20 or more only ever asks for full receives
    if prefetch >= 2 * BATCH:
        assert size in (0, BATCH)
    # and it waits only while less than half its prefetch is free
    if size == 0:
        assert prefetch > 0
        assert free < prefetch / 2
