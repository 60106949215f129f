"""Crash recovery is bounded by the heartbeat, not by the hard time limit (issue 15).

A crashed run's idempotency claim used to hold for the task's hard time limit + 5 s (305 s by
default), so a message SQS handed back after a crash was re-published to wait that long. The
claim now lives as long as the worker's heartbeat renews it: after a SIGKILL of the worker or of
a pool child, the task completes exactly once within 3 heartbeat intervals + one receive (+ the
task's own run time). Each test runs `celery -A taskapp worker` subprocesses on a queue prefix of
their own, with a 2 s heartbeat and a queue VisibilityTimeout of three intervals.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from taskapp.queues import app_specs
from taskapp.sqs.admin.provision import provision
from tests.integration.processes import descendants, worker_process
from tests.support.queues import prefixed_app, queue_url
from tests.support.waiting import result_or_whereabouts, wait_for
from tests.tasks import effect_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]
logger = logging.getLogger(__name__)

INTERVAL = 2  # TASKAPP_HEARTBEAT_INTERVAL
RECEIVE = 2  # TASKAPP_WAIT_TIME_SECONDS: one long poll
RUN = 4  # the task's own sleep, mid-way through which it is killed
# The bound (3 heartbeat intervals + one receive), plus the second run itself and a few
# seconds for the processes on a loaded machine. The old claim's lease was the task's hard time
# limit + 5 s: 30 s here, 305 s for a task on the default limit.
BOUND = 3 * INTERVAL + RECEIVE + RUN + 8


@pytest.fixture(scope="module")
def recovery_env(app: Any, sqs: Any, settings: Settings, provisioned: Any) -> dict[str, Any]:
    """Queues of their own whose VisibilityTimeout is three heartbeat intervals."""
    ours = settings.model_copy(update={"queue_prefix": settings.queue_prefix + "recover-"})
    provision(sqs, ours, app_specs(app))
    url = queue_url(sqs, ours, "default")
    # As in the issue (20 s VisibilityTimeout, 10 s heartbeat), scaled down: a message killed
    # before the first heartbeat comes back after three intervals too.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(3 * INTERVAL)})
    env = {
        **os.environ,
        "TASKAPP_QUEUE_PREFIX": ours.queue_prefix,
        "TASKAPP_HEARTBEAT_INTERVAL": str(INTERVAL),
        "TASKAPP_WAIT_TIME_SECONDS": str(RECEIVE),
    }
    return {"producer": prefixed_app(app, ours.queue_prefix), "env": env, "sqs": sqs, "url": url}


def _start(ctx: dict[str, Any], tag: str) -> Any:
    result = ctx["producer"].send_task("tests.record_long_limit", args=[tag], kwargs={"sleep": RUN})
    wait_for(lambda: effect_times(f"{tag}:start"), "the task to start", timeout=60, interval=0.05)
    return result


def _completed_within_bound(tag: str, since: float) -> float:
    """Wait (at most ``BOUND`` s) for the task's one effect; return the recovery time."""
    wait_for(lambda: effect_times(tag), f"the task to complete within {BOUND} s", timeout=BOUND)
    recovery = effect_times(tag)[0] - since
    logger.warning("recovery of %s: %.1f s (bound %d s)", tag, recovery, BOUND)
    return recovery


def _queue_settled(ctx: dict[str, Any]) -> bool:
    """No copy of any message left: visible, in flight or delayed (a re-published one)."""
    attrs = ctx["sqs"].get_queue_attributes(QueueUrl=ctx["url"], AttributeNames=["All"])
    counts = attrs["Attributes"]
    names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    return all(
        counts.get(name, "0") == "0" for name in (*names, "ApproximateNumberOfMessagesDelayed")
    )


def _exactly_once(ctx: dict[str, Any], tag: str, result: Any) -> None:
    assert result_or_whereabouts(result, timeout=10, interval=0.1) == 1
    wait_for(lambda: _queue_settled(ctx), "no copy of the message left in the queue", timeout=60)
    assert len(effect_times(tag)) == 1  # one effect...
    assert len(effect_times(f"{tag}:start")) == 2  # ...of two runs: the killed one and its redo


def test_after_a_sigkill_of_the_worker_the_next_worker_completes_it_within_the_bound(
    recovery_env: dict[str, Any], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    # given a task with a 25 s hard time limit running on worker A
    with worker_process(recovery_env["env"], "ra", tmp_path / "a.log") as worker_a:
        result = _start(recovery_env, tag)
        # when the whole worker is SIGKILLed mid-task
        os.killpg(worker_a.pid, signal.SIGKILL)
        worker_a.wait(10)
    # then worker B completes it within 3 heartbeat intervals + one receive of being ready
    with worker_process(recovery_env["env"], "rb", tmp_path / "b.log"):
        _completed_within_bound(tag, since=time.time())
        _exactly_once(recovery_env, tag, result)


def test_after_a_sigkill_of_a_pool_child_the_same_worker_completes_it_within_the_bound(
    recovery_env: dict[str, Any], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    # given a task with a 25 s hard time limit running on worker C
    with worker_process(recovery_env["env"], "rc", tmp_path / "c.log") as worker:
        result = _start(recovery_env, tag)
        # when the pool child running it is SIGKILLed (the worker lives on)
        for child in descendants(worker.pid):
            os.kill(child, signal.SIGKILL)
        killed_at = time.time()
        # then the worker completes it within 3 heartbeat intervals + one receive, once
        _completed_within_bound(tag, since=killed_at)
        _exactly_once(recovery_env, tag, result)
        assert worker.poll() is None


def _lease_until(key: str) -> float:
    from sqlalchemy import select

    from taskapp.db import engine
    from taskapp.idempotency import idempotency_keys as keys

    with engine().connect() as conn:
        row = conn.execute(select(keys.c.lease_until).where(keys.c.key == key)).scalar()
    return float(row or 0)


def test_a_run_longer_than_its_short_lease_keeps_its_claim_while_it_lives(
    recovery_env: dict[str, Any], tmp_path: Path
) -> None:
    from taskapp.db import engine
    from taskapp.idempotency import claim, key_for

    tag = uuid.uuid4().hex
    with worker_process(recovery_env["env"], "rd", tmp_path / "d.log"):
        # given a run that lasts longer than its claim's first lease (3 intervals)
        result = recovery_env["producer"].send_task(
            "tests.record_long_limit", args=[tag], kwargs={"sleep": 6 * INTERVAL}
        )
        wait_for(lambda: effect_times(f"{tag}:start"), "the task to start", timeout=60)
        key = key_for("tests.record_long_limit", result.id)
        first = _lease_until(key)
        # when that first lease has run out while the run goes on
        wait_for(lambda: time.time() > first + INTERVAL, "the first lease to run out")
        # then the heartbeat has renewed it: a duplicate delivery must wait, not run it again
        assert _lease_until(key) > first
        duplicate = claim(engine(), key, "tests.record_long_limit", 60)
        assert not duplicate.acquired
        assert not duplicate.done
        assert result_or_whereabouts(result, timeout=60, interval=0.1) == 1
    assert len(effect_times(tag)) == 1


def _worker_counters(url: str, worker: str) -> dict[str, float]:
    """The exporter's per-worker counters for ``worker`` (``name@host``) from one GET /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("worker", "").startswith(f"{worker}@")
    }


def test_the_exporter_reports_a_workers_heartbeat_renewals_and_idempotency_waits(
    recovery_env: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from taskapp import idempotency
    from taskapp.db import engine
    from taskapp.metrics import Exporter

    name = f"rm{uuid.uuid4().hex[:8]}"
    ours = settings.model_copy(update={"queue_prefix": recovery_env["env"]["TASKAPP_QUEUE_PREFIX"]})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Exporter(ours, interval=0))
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    producer = recovery_env["producer"]
    try:
        with worker_process(recovery_env["env"], name, tmp_path / "m.log"):
            # given: a run held across a few heartbeat ticks (a prefork pool child runs it)
            held = producer.send_task(
                "tests.record_long_limit", args=[uuid.uuid4().hex], kwargs={"sleep": 3 * INTERVAL}
            )
            assert result_or_whereabouts(held, timeout=60, interval=0.1) == 1
            # and a delivery whose key another delivery holds a live claim on
            arg = uuid.uuid4().hex
            key = idempotency.key_for("tests.record_long_limit", arg)
            other = idempotency.claim(engine(), key, "tests.record_long_limit", 20)
            assert other.acquired
            duplicate = producer.send_task(
                "tests.record_long_limit",
                args=[uuid.uuid4().hex],
                headers={"idempotency_key": arg},
            )

            # when: the exporter is scraped
            seen = wait_for(
                lambda: (
                    (c := _worker_counters(url, name)).get("taskapp_idempotency_waits_total") and c
                ),
                "the worker's idempotency wait on /metrics",
                timeout=60,
                interval=0.5,
            )

            # then: the renewals of the held run and the wait in the pool child are there
            assert seen["taskapp_heartbeat_renewals_total"] >= 1
            assert seen["taskapp_heartbeat_failures_total"] == 0
            assert seen["taskapp_idempotency_waits_total"] >= 1
            # the other delivery lets go: the one that waited runs when it comes back
            idempotency.release(engine(), key, other.owner)
            assert result_or_whereabouts(duplicate, timeout=90, interval=0.2) == 1
    finally:
        server.shutdown()
        server.server_close()
