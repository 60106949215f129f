"""SMTP faults under a worker subprocess draining a mixed load: refused for a while, 421 once.

Emails go through a fault proxy in front of a plain SMTP sink; the sink's messages are the
ledger (one per recipient, each recipient its own idempotency key).
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
from tests.support.faultproxy import FaultProxy, Mode
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.timeout(480),
]

OUTAGE = 30  # the matrix: 30 s


def test_smtp_421_once_then_refused_mid_drain(
    drain: Drain, s3: Any, settings: Settings, tmp_path: Path
) -> None:
    # given a mixed load, a worker whose SMTP server is behind a proxy, and a first DATA answered
    # 421 (the server closing the session)
    server = sink()
    server.answer("421 4.3.2 Service shutting down, closing channel")
    log = tmp_path / "worker.log"
    try:
        with FaultProxy(("127.0.0.1", server.port)) as proxy:
            db, env = sqlite_env(drain, tmp_path, proxy.port)
            load = MixedLoad(drain, s3, settings.bucket, server, db)
            load.send()
            with worker_process(env, "mixed", log, queue=queue_arg()) as worker:
                # when the 421 was answered and an email got through after it
                wait_for(lambda: server.received, "an email past the 421", 120, 0.2)
                # and SMTP refuses connections while a second batch drains
                # (the worker's cached connection is cut first: refusing only stops new ones)
                proxy.set(Mode.RESET)
                proxy.set(Mode.REFUSE)
                load.send(noops=2, emails=3, images=0, reports=0)
                time.sleep(OUTAGE)  # the fault's length, not a wait for a result
                before = load.done()
                assert before < load.sent, "the outage delayed nothing"
                proxy.set(Mode.PASS)
                # then the same worker delivers every email once, and the rest ran once
                finish(load, worker, log, before)
    finally:
        server.stop()
    assert server.attempts > len(server.received)  # the 421 happened
