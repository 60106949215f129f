"""A warm shutdown during an SQS outage hands prefetched messages back, never dumps them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.faults.drain import Drain
from tests.integration.processes import worker_process
from tests.support.faultproxy import Mode
from tests.support.waiting import wait_for
from tests.tasks import effect_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _a_restore_failed(text: str) -> bool:
    return "hand-back" in text or "UNABLE TO RESTORE" in text


def test_restore_during_an_outage_is_retried_not_dumped(drain: Drain, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with worker_process(drain.env, "restore", log) as worker:
        # given a worker running a long task and holding 3 prefetched ones
        drain.producer.send_task("tests.sleepy", args=[f"{drain.run}-long", 3])
        wait_for(lambda: effect_times(f"{drain.run}-long:start"), "the long task to start", 30)
        short = [drain.producer.send_task("tests.record", args=[drain.run]) for _ in range(3)]
        wait_for(
            lambda: all(r.id in log.read_text() for r in short), "the prefetch", 30, interval=0.1
        )
        # when SQS connections are reset while it shuts down (warm) and restores them
        drain.proxy.set(Mode.RESET)
        os.kill(worker.pid, signal.SIGTERM)
        # (the old channel raised here: "UNABLE TO RESTORE", the messages dumped to a file)
        wait_for(lambda: _a_restore_failed(log.read_text()), "a hand-back to fail", 90, 0.05)
        drain.proxy.set(Mode.PASS)
        wait_for(lambda: worker.poll() is not None, "the worker to stop", 60, 0.1)
    # then nothing was dumped, and the three are SQS's to deliver again, none ran
    text = log.read_text()
    assert "UNABLE TO RESTORE" not in text, text[-3000:]
    assert effect_times(drain.run) == []
    assert drain.depth() >= 3
