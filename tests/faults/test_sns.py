"""SNS publish failing for a while (events, remote control) under a worker subprocess that
sends events (``-E``) while it drains a mixed load: tasks must not fail because monitoring did.

Inside the load, tasks publish tasks (an email retried after a 451, a report notifying by
email), and every publish sends a ``task-sent`` event through SNS as well.
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

pytestmark = pytest.mark.integration

OUTAGE = 30  # the matrix: 30 s


@pytest.mark.slow
@pytest.mark.faults  # over a minute with the 30 s fault (65 s here beside other load)
@pytest.mark.timeout(480)
def test_sns_publish_failing_mid_drain(
    drain: Drain, s3: Any, settings: Settings, tmp_path: Path
) -> None:
    # given a worker with events on, draining a mixed load; SNS fails while a flag file exists
    server = sink()
    flag, injected = tmp_path / "sns-down", tmp_path / "injected.txt"
    inject = {
        "TASKAPP_TEST_INJECT_SNS_FAILURE": str(flag),
        "TASKAPP_TEST_INJECT_LOG": str(injected),
    }
    db, env = sqlite_env(drain, tmp_path, server.port, **inject)
    log = tmp_path / "worker.log"
    try:
        load = MixedLoad(drain, s3, settings.bucket, server, db)
        load.send()
        with worker_process(env, "mixed", log, queue=queue_arg(), extra=("-E",)) as worker:
            wait_for(lambda: load.done() >= 2, "2 tasks done", 120, 0.2)
            # when SNS fails every publish while more tasks drain, one email retrying (451)
            flag.touch()
            server.answer("451 4.3.0 Try again later")
            load.send(noops=3, emails=2, images=1, reports=1)
            time.sleep(OUTAGE)  # the fault's length, not a wait for a result
            before = load.done()
            flag.unlink()
            # then every task ran once and none is a dead letter: monitoring failed, not they
            assert finish(load, worker, log, before)["dead"] == 0
    finally:
        server.stop()
    assert "SNSInternalError" in injected.read_text()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_events_are_dropped_not_retried_or_kept_while_sns_fails(app: Any) -> None:
    # given SNS answering 500 to every Publish of this process's event channel
    from botocore.awsrequest import AWSResponse

    calls: list[str] = []
    error = b"<ErrorResponse><Error><Code>InternalError</Code></Error></ErrorResponse>"

    def fail(request: Any, **_: Any) -> Any:
        calls.append(request.url)
        return AWSResponse(request.url, 500, {"content-type": "text/xml"}, _Raw(error))

    with app.connection_for_write() as conn:
        sns = conn.default_channel.fanout.get_client()
        sns.meta.events.register("before-send.sns.Publish", fail)
        dispatcher = app.events.Dispatcher(conn, enabled=True)
        outages = conn.default_channel.event_outages
        # when a worker's events keep coming (queued for the channel's publisher thread)
        for _ in range(3):
            dispatcher.send("worker-heartbeat")
        assert outages.flush(60)
        # then one publish was tried (with its client's attempts), the rest were dropped at once,
        # and none waits in Celery's in-memory buffer (flushed only on reconnect, never on SQS)
        attempts = len(calls)
        assert 1 <= attempts <= 5
        assert not dispatcher._outbound_buffer
        # and once SNS answers, the next try after the backoff goes out
        sns.meta.events.unregister("before-send.sns.Publish", fail)
        wait_for(
            lambda: dispatcher.send("worker-heartbeat") or outages.failures == 0,
            "an event to go out again",
            timeout=10,
            interval=0.1,
        )
