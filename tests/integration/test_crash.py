"""Crash and shutdown faults against real worker processes (not the in-process session worker).

Each test runs `celery -A taskapp worker` subprocesses on their own queue prefix (so the
session worker never competes) and the session's database, and ends every process it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
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
from tests.support.waiting import result_or_whereabouts, wait_for
from tests.tasks import effect_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crash_env(
    app: Any, sqs: Any, settings: Settings, provisioned: Any
) -> tuple[Any, dict[str, str]]:
    """A producer and a worker environment on queues of their own."""
    prefix = settings.queue_prefix + "crash-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    env = {**os.environ, "TASKAPP_QUEUE_PREFIX": prefix, "TASKAPP_HEARTBEAT_INTERVAL": "1"}
    return prefixed_app(app, prefix), env


def _wait_for_start(tag: str, timeout: float = 20) -> None:
    wait_for(
        lambda: effect_times(f"{tag}:start"), "the task to start", timeout=timeout, interval=0.1
    )


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_sigkill_of_the_whole_worker_redelivers_and_completes_once(
    crash_env: Any, tmp_path: Path
) -> None:
    producer, env = crash_env
    tag = uuid.uuid4().hex
    # given a task running on worker A
    with worker_process(env, "a", tmp_path / "a.log") as worker_a:
        result = producer.send_task(
            "tests.record", args=[tag], kwargs={"sleep": 3, "mark_start": True}
        )
        _wait_for_start(tag)
        # when the whole worker is SIGKILLed mid-task
        os.killpg(worker_a.pid, signal.SIGKILL)
        worker_a.wait(10)
    # then worker B receives the message again and completes it, once
    with worker_process(env, "b", tmp_path / "b.log"):
        assert result_or_whereabouts(result, timeout=60, interval=0.2) == 1
    assert len(effect_times(tag)) == 1
    assert len(effect_times(f"{tag}:start")) == 2


def test_sigkill_of_a_pool_child_redelivers_instead_of_failing(
    crash_env: Any, tmp_path: Path
) -> None:
    producer, env = crash_env
    tag = uuid.uuid4().hex
    with worker_process(env, "c", tmp_path / "c.log") as worker:
        result = producer.send_task(
            "tests.record", args=[tag], kwargs={"sleep": 3, "mark_start": True}
        )
        _wait_for_start(tag)
        # when the pool child running the task is SIGKILLed
        for child in _children(worker.pid):
            os.kill(child, signal.SIGKILL)
        # then the task is never recorded as failed, and completes once
        states = set()

        def ready() -> bool:
            states.add(result.state)
            return bool(result.ready())

        # (a timeout here is diagnosed by result_or_whereabouts, which says where the message is)
        with contextlib.suppress(AssertionError):
            wait_for(ready, "the task to complete", timeout=60, interval=0.2)
        assert result_or_whereabouts(result, timeout=1) == 1
    assert "FAILURE" not in states
    assert len(effect_times(tag)) == 1


def test_warm_shutdown_releases_prefetched_messages_to_another_worker(
    crash_env: Any, tmp_path: Path
) -> None:
    producer, env = crash_env
    # Production polling and heartbeats: kombu alone would hand the prefetched messages back
    # with a 20 s visibility (wait_time_seconds) and heartbeats renew them to 30 s.
    env = {**env, "TASKAPP_HEARTBEAT_INTERVAL": "10", "TASKAPP_WAIT_TIME_SECONDS": "20"}
    tag = uuid.uuid4().hex
    log_d = tmp_path / "d.log"
    with worker_process(env, "d", log_d) as worker_d:
        # given worker D running a long task and holding 3 prefetched short ones
        long_ = producer.send_task("tests.sleepy", args=[f"{tag}-long", 6])
        _wait_for_start(f"{tag}-long")
        short = [producer.send_task("tests.record", args=[tag]) for _ in range(3)]
        wait_for(
            lambda: all(r.id in log_d.read_text() for r in short),
            "D to prefetch the short tasks",
            timeout=15,
            interval=0.1,
        )
        with worker_process(env, "e", tmp_path / "e.log"):
            # when D gets SIGTERM (warm shutdown) while its long task runs
            stopped_at = time.time()
            worker_d.send_signal(signal.SIGTERM)
            # then worker E runs the short ones within seconds (about 1.5 s here when the
            # machine is quiet), not after the 20 s kombu would hide them for
            for result in short:
                result_or_whereabouts(result, timeout=30, interval=0.05)
            assert max(effect_times(tag)) - stopped_at < 6
            # and D finished its running task before exiting
            assert result_or_whereabouts(long_, timeout=30, interval=0.1) == 1
            worker_d.wait(30)
    assert len(effect_times(tag)) == 3
    assert len(effect_times(f"{tag}-long")) == 1
