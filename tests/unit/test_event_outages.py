"""Event publishing (taskapp/sqs/event_outages.py): off the caller's thread; dropped while SNS
fails."""

from __future__ import annotations

import threading
import time

from botocore.exceptions import EndpointConnectionError

from taskapp.sqs.event_outages import EventOutages


def test_a_publish_that_gets_no_answer_does_not_hold_the_caller() -> None:
    # given SNS that does not answer the first publish until released
    answered = threading.Event()
    sent: list[int] = []

    def hanging() -> None:
        answered.wait(30)
        sent.append(0)

    publisher = EventOutages()
    # when the loop publishes three events
    queued = [publisher.publish(hanging)] + [
        publisher.publish(lambda n=n: sent.append(n)) for n in (1, 2)
    ]
    # then each call returned at once (queued), though nothing has been sent yet
    assert queued == [True, True, True]
    assert sent == []
    # and once SNS answers, all three go out in order
    answered.set()
    assert publisher.flush(10)
    assert sent == [0, 1, 2]


def test_while_sns_fails_events_are_dropped_until_the_backoff_ends() -> None:
    now = [100.0]
    publisher = EventOutages(clock=lambda: now[0])
    sent: list[str] = []

    def failing() -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    # given one publish that failed
    publisher.publish(failing)
    assert publisher.flush(10)
    # then the next event is dropped without a try, within the backoff
    assert not publisher.publish(lambda: sent.append("dropped"))
    # and after the backoff one is tried again, and passes
    now[0] += 60
    assert publisher.publish(lambda: sent.append("after"))
    assert publisher.flush(10)
    assert sent == ["after"]
    assert publisher.failures == 0


def test_a_full_queue_drops_new_events() -> None:
    released = threading.Event()
    publisher = EventOutages(capacity=2)
    publisher.publish(lambda: released.wait(30))  # taken by the thread, or still queued
    results = [publisher.publish(lambda: None) for _ in range(3)]
    released.set()
    assert results.count(False) >= 1
    assert publisher.flush(10)


def test_a_send_that_raises_costs_that_event_not_the_publisher() -> None:
    publisher, sent = EventOutages(), []

    def channel_gone() -> None:
        raise AttributeError("'NoneType' object has no attribute 'client'")

    # given a send that fails with something other than a failed publish
    publisher.publish(channel_gone)
    publisher.publish(lambda: sent.append("next"))
    # then the events after it still go out
    assert publisher.flush(10)
    assert sent == ["next"]


def test_closing_a_channel_sends_its_queued_events_first() -> None:
    from taskapp.app import app

    sent: list[str] = []
    with app.connection_for_write() as conn:
        channel = conn.channel()

        def slow() -> None:
            time.sleep(0.3)
            sent.append("task-sent")

        # given an event queued on a producer's channel, still on its way
        channel.event_outages.publish(slow)
        # when the producer closes the channel at once
        channel.close()
    # then the event went out before the channel closed
    assert sent == ["task-sent"]
