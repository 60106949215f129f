"""PostgreSQL faults under a worker subprocess draining a mixed load: connections reset
mid-task three times, and the server unreachable for a while.

The worker's ``TASKAPP_DATABASE_URL`` (application tables, idempotency claims, results) goes
through a fault proxy to a fresh database; the test reads the same database directly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from tests.faults.drain import Drain
from tests.faults.mixed import MixedLoad, finish, postgres, queue_arg, sink, smtp_url, through
from tests.integration.processes import worker_process
from tests.support.faultproxy import Mode
from tests.support.waiting import wait_for

#: Under a minute each here; the outage cell (about 50 s) is in the ``faults`` group.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(480)]

OUTAGE = 30  # the matrix: 30 s


def _cell(drain: Drain, s3: Any, settings: Settings, tmp_path: Path, fault: Any) -> None:
    server = sink()
    log = tmp_path / "worker.log"
    try:
        with postgres() as (url, proxy):
            env = {
                **drain.env,
                "TASKAPP_DATABASE_URL": through(url, proxy),
                "TASKAPP_EMAIL_BACKEND": "smtp",
                "TASKAPP_SMTP_URL": smtp_url(server.port),
            }
            load = MixedLoad(drain, s3, settings.bucket, server, url)
            # given a worker draining a mixed load whose no-ops take a second each
            load.send(noops=8, sleep=1)
            with worker_process(env, "mixed", log, queue=queue_arg()) as worker:
                wait_for(lambda: load.done() >= 2, "2 tasks done", 120, 0.2)
                # when the database fails mid-drain
                before = fault(load, proxy)
                assert before < load.sent, "the fault delayed nothing"
                # then the same worker finishes every task, each effect once: none was
                # dead-lettered for the database's sake (taskapp/sqs/unavailable.py)
                assert finish(load, worker, log, before)["dead"] == 0
    finally:
        server.stop()


def test_postgres_connections_reset_three_times_mid_drain(
    drain: Drain, s3: Any, settings: Settings, tmp_path: Path
) -> None:
    def resets(load: MixedLoad, proxy: Any) -> int:
        for _ in range(3):
            done = load.done()
            proxy.set(Mode.RESET)  # every open connection: mid-task, mid-heartbeat, idle
            proxy.set(Mode.PASS)
            wait_for(lambda d=done: load.done() > d, "a task done after the reset", 120, 0.2)
        return load.done()

    _cell(drain, s3, settings, tmp_path, resets)


@pytest.mark.faults
def test_postgres_down_mid_drain(drain: Drain, s3: Any, settings: Settings, tmp_path: Path) -> None:
    def down(load: MixedLoad, proxy: Any) -> int:
        proxy.set(Mode.RESET)
        proxy.set(Mode.REFUSE)
        load.send(noops=2, emails=2, images=0, reports=0)
        time.sleep(OUTAGE)  # the fault's length, not a wait for a result
        before = load.done()
        proxy.set(Mode.PASS)
        return before

    _cell(drain, s3, settings, tmp_path, down)
