"""FIFO queues: order within a message group across two workers, deduplication, countdowns."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from taskapp.queues import app_specs
from taskapp.sqs.admin.provision import provision
from tests.integration.processes import worker_process
from tests.support.queues import prefixed_app
from tests.support.waiting import result_or_whereabouts
from tests.tasks import effect_tags, effect_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QUEUE = "default.fifo"


@pytest.fixture(scope="module")
def fifo(app: Any, sqs: Any, settings: Settings, provisioned: Any) -> tuple[Any, dict[str, str]]:
    """A producer and worker environment whose default family is FIFO, on its own prefix."""
    prefix = settings.queue_prefix + "fifo-"
    os.environ["TASKAPP_FIFO_QUEUES"] = "default"
    try:
        specs = app_specs(app)
    finally:
        del os.environ["TASKAPP_FIFO_QUEUES"]
    assert QUEUE in {s.name for s in specs}
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), specs)
    env = {
        **os.environ,
        "TASKAPP_QUEUE_PREFIX": prefix,
        "TASKAPP_FIFO_QUEUES": "default",
        "TASKAPP_HEARTBEAT_INTERVAL": "1",
    }
    return prefixed_app(app, prefix), env


def test_order_within_a_group_holds_across_two_workers_and_duplicates_drop(
    fifo: Any, tmp_path: Path
) -> None:
    producer, env = fifo
    tag = uuid.uuid4().hex
    # given two customers' ordered updates (25 each) and one message sent twice with one dedup
    # id -- sent before the workers start: moto checks a long poll's group locks against a
    # snapshot taken when the poll began (real SQS does not), so a poll already waiting when
    # the messages arrive could take a group's later message early
    results = [
        producer.send_task(
            "tests.record",
            args=[f"{tag}:{group}:{i:02d}"],
            queue=QUEUE,
            MessageGroupId=f"{group}-{tag}",
        )
        for i in range(25)
        for group in ("a", "b")
    ]
    for _ in range(2):
        producer.send_task(
            "tests.record",
            args=[f"{tag}-dup"],
            queue=QUEUE,
            MessageGroupId="other",
            MessageDeduplicationId=f"{tag}-dup",
        )
    # when two FIFO workers consume them (solo pool: one message at a time, in receive order)
    with (
        worker_process(env, "f1", tmp_path / "f1.log", QUEUE, pool="solo"),
        worker_process(env, "f2", tmp_path / "f2.log", QUEUE, pool="solo"),
    ):
        for result in results:
            result_or_whereabouts(result, timeout=90, interval=0.1)
        time.sleep(1)
    # then each customer's updates ran in order, and the duplicate once
    for group in ("a", "b"):
        assert effect_tags(f"{tag}:{group}:") == [f"{tag}:{group}:{i:02d}" for i in range(25)]
    assert len(effect_times(f"{tag}-dup")) == 1


def test_countdown_on_fifo_is_held_by_the_worker_and_runs_once(fifo: Any, tmp_path: Path) -> None:
    producer, env = fifo
    tag = uuid.uuid4().hex
    with worker_process(env, "f3", tmp_path / "f3.log", QUEUE, pool="solo"):
        sent = time.time()
        # SQS FIFO queues take no DelaySeconds: the worker holds the message until its ETA
        # while the heartbeat keeps it invisible
        result = producer.send_task(
            "tests.record", args=[tag], queue=QUEUE, countdown=6, MessageGroupId=tag
        )
        assert result_or_whereabouts(result, timeout=30, interval=0.1) == 1
        time.sleep(2)
    (ran_at,) = effect_times(tag)
    assert ran_at - sent >= 6
