"""S3 answering ``503 SlowDown`` to every put for a while, mid-thumbnails, under a worker
subprocess draining a mixed load (the fault is injected in the worker by the test-only
botocore hook in tests/faults/hooks, switched by a flag file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from tests.faults.drain import Drain
from tests.faults.mixed import MixedLoad, finish, queue_arg, sink, sqlite_env
from tests.integration.processes import worker_process
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(480)]

OUTAGE = 30  # the matrix: 30 s


def test_s3_puts_slow_down_mid_thumbnails(
    drain: Drain, s3: Any, settings: Settings, tmp_path: Path
) -> None:
    # given a worker draining a mixed load, whose S3 puts fail while a flag file exists
    server = sink()
    flag, injected = tmp_path / "slowdown", tmp_path / "injected.txt"
    inject = {
        "TASKAPP_TEST_INJECT_S3_SLOWDOWN": str(flag),
        "TASKAPP_TEST_INJECT_LOG": str(injected),
    }
    db, env = sqlite_env(drain, tmp_path, server.port, **inject)
    log = tmp_path / "worker.log"
    try:
        load = MixedLoad(drain, s3, settings.bucket, server, db)
        load.send()
        with worker_process(env, "mixed", log, queue=queue_arg()) as worker:
            wait_for(lambda: load.done() >= 2, "2 tasks done", 120, 0.2)
            # when every put is answered SlowDown while more thumbnails and a report queue up
            flag.touch()
            load.send(noops=2, emails=1, images=3, reports=1)
            time.sleep(OUTAGE)  # the fault's length, not a wait for a result
            before = load.done()
            assert before < load.sent, "the fault delayed nothing"
            flag.unlink()
            # then the same worker makes every variant set and report once
            finish(load, worker, log, before)
    finally:
        server.stop()
    assert "SlowDown" in injected.read_text()
