"""Monitoring fixtures: a worker and Flower as real subprocesses on the session's moto server.

Remote control is exercised from subprocesses only: an ``inspect()`` in the process that also
runs the in-process session worker shares its event loop (see SQS-FACTS).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from taskapp.aws import client
from taskapp.local.net import free_port, wait_for_port
from taskapp.sqs.ephemeral import EPHEMERAL_INFIX
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
#: Queue only this module's worker consumes, so the session worker never takes its tasks.
WATCH_QUEUE = "watchtest"
NODE = f"watch-{uuid.uuid4().hex[:6]}@tests"


def celery_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A taskapp ARGS`` in a subprocess with the session's environment."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "taskapp", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def remote_control(node: str) -> dict[str, Any]:
    """Replies of every inspect/control call of ``tests/monitoring/remote_control.py``."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.monitoring.remote_control", node],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def monitoring_litter(settings: Settings) -> tuple[set[str], set[str]]:
    """Ephemeral queues and the SNS subscriptions of the two monitoring topics, by name."""
    sqs, sns = client("sqs", settings), client("sns", settings)
    urls = sqs.list_queues(QueueNamePrefix=settings.queue_prefix + EPHEMERAL_INFIX)
    queues = {u.rsplit("/", 1)[-1] for u in urls.get("QueueUrls", [])}
    topics = {settings.queue_prefix + "celeryev", settings.queue_prefix + "celery-pidbox"}
    subs = {
        s["SubscriptionArn"]
        for s in sns.list_subscriptions()["Subscriptions"]
        if s["TopicArn"].rsplit(":", 1)[-1] in topics
    }
    return queues, subs


@dataclass
class Process:
    """A subprocess with its log file, stopped by PID."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(10)


def start(name: str, args: list[str], log_dir: Path, **env: str) -> Process:
    log = log_dir / f"{name}.log"
    popen = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "taskapp", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Process(name, popen, log)


@dataclass
class Stack:
    """A worker (``-E``, prefork) consuming ``WATCH_QUEUE`` and a Flower, both subprocesses."""

    settings: Settings
    worker: Process
    flower: Process
    port: int
    baseline: tuple[set[str], set[str]]
    tmp: Path
    node: str = NODE
    sent: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, timeout: float = 20) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.read().decode())

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def post(self, path: str) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def logs(self) -> str:
        return f"--- worker\n{self.worker.tail()}\n--- flower\n{self.flower.tail()}"


def _event_subscribers(settings: Settings) -> set[str]:
    sns = client("sns", settings)
    topic = settings.queue_prefix + "celeryev"
    return {
        s["Endpoint"].rsplit(":", 1)[-1]
        for s in sns.list_subscriptions()["Subscriptions"]
        if s["TopicArn"].endswith(":" + topic)
    }


def _heartbeat_seen(stack: Stack) -> bool:
    rows = stack.get_json("/workers?json=1")["data"]
    return any(r["hostname"] == NODE and r.get("worker-heartbeat") for r in rows)


@pytest.fixture(scope="module")
def stack(
    provisioned: list[Any], settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Start Flower and the worker, wait until Flower has subscribed and sees the worker."""
    sqs = client("sqs", settings)
    for name in (WATCH_QUEUE, WATCH_QUEUE + "-dlq"):
        sqs.create_queue(QueueName=settings.queue_prefix + name)
    tmp = tmp_path_factory.mktemp("monitoring")
    baseline = monitoring_litter(settings)
    subscribers = _event_subscribers(settings)
    port = free_port()
    flower = start(
        "flower",
        ["flower", "--conf=config/flowerconfig.py", f"--port={port}", "--address=127.0.0.1"],
        tmp,
        FLOWER_UNAUTHENTICATED_API="1",
    )
    worker = start(
        "worker",
        ["worker", "-E", "-n", NODE, "--pool=prefork", "-c", "1", "-Q", WATCH_QUEUE]
        + ["-I", "tests.tasks", "-l", "INFO", "--without-mingle", "--without-gossip"],
        tmp,
    )
    stack = Stack(settings, worker, flower, port, baseline, tmp)
    try:
        wait_for_port(port, timeout=60)
        wait_for(
            lambda: _event_subscribers(settings) - subscribers,
            "Flower's event subscription",
            timeout=60,
            interval=0.3,
        )
        wait_for(
            lambda: _heartbeat_seen(stack),
            "the worker's heartbeat in Flower",
            timeout=60,
            interval=0.3,
        )
        yield stack
    except BaseException:
        print(stack.logs())  # noqa: T201 - the stack's logs, shown with the failure
        raise
    finally:
        worker.stop()
        flower.stop()
