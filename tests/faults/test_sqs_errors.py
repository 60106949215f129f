"""SQS answering badly for a whole drain: 20 % throttled / 5xx, or 300 ms late on every call.

The same checks as the network cells (tests/faults/test_sqs_network.py): one worker process
drains everything, every task runs exactly once, nothing is dead-lettered or left queued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.drain import Drain
from tests.faults.test_sqs_network import _check
from tests.integration.processes import worker_process
from tests.support.faultproxy import Mode
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _drain_all(drain: Drain, tmp_path: Path, env: dict[str, str], tasks: int) -> Path:
    drain.send(tasks, sleep=0.02)
    log = tmp_path / "worker.log"
    with worker_process(env, "faults", log) as worker:
        wait_for(lambda: drain.done() == drain.sent, "every task done", timeout=150, interval=0.2)
        wait_for(lambda: drain.depth() == 0, "the queue to empty", timeout=60, interval=0.2)
        alive = worker.poll() is None
        _check(drain, log, worker.pid, alive)
    return log


def test_a_fifth_of_sqs_calls_throttled_or_5xx(drain: Drain, tmp_path: Path) -> None:
    # given every SQS call of the worker failing with a 20 % chance (throttling, 500, 503)
    injected = tmp_path / "injected.txt"
    env = {
        **drain.env,
        "TASKAPP_TEST_INJECT_SQS_ERRORS": "0.2",
        "TASKAPP_TEST_INJECT_LOG": str(injected),
    }
    # when it drains 100 tasks, then each ran once (checked in _drain_all)
    _drain_all(drain, tmp_path, env, 100)
    codes = injected.read_text().split()[1::2]
    print(f"injected {len(codes)} SQS errors: {sorted(set(codes))}")  # noqa: T201 - figure
    assert {"RequestThrottled", "ThrottlingException", "ServiceUnavailable"} <= set(codes)


def test_300ms_latency_on_every_sqs_call(drain: Drain, tmp_path: Path) -> None:
    # given 300 ms added to every answer from AWS, for the whole drain (heartbeats included)
    drain.proxy.set(Mode.LATENCY, latency_ms=300)
    # when the worker drains 60 tasks, then each ran once, none twice (checked in _drain_all)
    _drain_all(drain, tmp_path, drain.env, 60)
