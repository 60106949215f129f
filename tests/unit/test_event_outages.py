"""Event publishing (taskapp/sqs/event_outages.py): off the caller's thread; dropped while SNS
fails."""

from __future__ import annotations

import threading

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
