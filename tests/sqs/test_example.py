"""examples/sqs_app.py, a Celery app with the SQS extension only, under a real worker process.

The worker runs where ``taskapp`` is a namespace holding nothing but ``sqs`` (the repository root
is taken off ``sys.path``), as in a project that installed the taskapp-sqs distribution alone.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskapp.sqs.deadletter import read_reason

ROOT = Path(__file__).resolve().parents[2]
BOOT = (
    "import sys; root = sys.argv.pop(1); shim = sys.argv.pop(1);"
    "sys.path[:] = [shim] + [p for p in sys.path if p not in ('', root)];"
    "from celery.__main__ import main; sys.argv[0] = 'celery'; main()"
)


def _until(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


@pytest.fixture
def example(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example app (producer side here), its queues created, and its worker running."""
    prefix = f"{settings.queue_prefix}ex-"
    monkeypatch.setenv("QUEUE_PREFIX", prefix)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    module = importlib.reload(importlib.import_module("sqs_app"))
    module.create_queues(visibility=2)
    shim = tmp_path / "shim"
    (shim / "taskapp").mkdir(parents=True)
    (shim / "taskapp" / "sqs").symlink_to(ROOT / "taskapp" / "sqs")
    (shim / "sqs_app.py").symlink_to(ROOT / "examples" / "sqs_app.py")
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-c", BOOT, str(ROOT), str(shim), "-A", "sqs_app", "worker"]
    argv += ["-P", "solo", "-Q", "work", "-E", "--loglevel=INFO"]
    env = {**os.environ, "QUEUE_PREFIX": prefix}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _until(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, "not ready")
        assert proc.poll() is None, log.read_text()[-3000:]
        yield module, prefix, log
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
def test_example_app_gets_native_countdowns_and_dead_letters_with_reasons(
    example: Any, sqs: Any
) -> None:
    module, prefix, log = example
    work = sqs.get_queue_url(QueueName=prefix + "work")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=prefix + "work-dlq")["QueueUrl"]
    # given a countdown longer than the queue's visibility timeout (2 s)
    due = module.remind.apply_async(("call mom",), countdown=5)
    refused = module.refuse.delay(42)
    # then the refusal lands in the DLQ with its reason
    letter = _until(
        lambda: sqs.receive_message(
            QueueUrl=dlq, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages"),
        "no dead letter",
    )[0]
    reason = read_reason(letter.get("MessageAttributes") or {})
    assert reason is not None
    assert (reason.reason, reason.error_type, reason.task_id) == (
        "permanent",
        "ValueError",
        refused.id,
    )
    # and the reminder runs once, when due: SQS held it, no worker past its visibility timeout
    done = f"example.remind[{due.id}] succeeded"
    _until(lambda: done in log.read_text(), "reminder did not run")
    attrs = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

    def drained() -> bool:
        counts = sqs.get_queue_attributes(QueueUrl=work, AttributeNames=attrs)["Attributes"]
        return all(int(counts[name]) == 0 for name in attrs)

    _until(drained, "reminder's message was not deleted")
    assert log.read_text().count(done) == 1
    assert log.read_text().count(f"example.remind[{due.id}] received") == 1


@pytest.mark.slow
def test_flower_sees_the_example_worker_over_sns(example: Any) -> None:
    module, _, _ = example
    app = module.app
    # given what Flower's dashboard reads: the worker's events, fanned out through SNS
    seen: list[dict[str, Any]] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": seen.append})

        def heard() -> bool:
            with contextlib.suppress(socket.timeout, TimeoutError):
                receiver.capture(limit=1, timeout=2)
            return any(e.get("type") == "worker-heartbeat" for e in seen)

        # then the example worker's heartbeats arrive
        _until(heard, "no worker-heartbeat event over SNS", timeout=60)
    # and what Flower's worker page asks, remote control over SNS, gets the worker's answer
    replies = app.control.inspect(timeout=5).ping() or {}
    assert [answer for answer in replies.values() if answer == {"ok": "pong"}]
