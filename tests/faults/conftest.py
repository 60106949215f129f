"""Fault cells: a `celery -A taskapp worker` subprocess whose AWS endpoint is a fault proxy.

Each test gets its own queue prefix (provisioned with DLQs, as in production), a
:class:`~tests.support.faultproxy.FaultProxy` in front of the session's moto server, and a
:class:`Drain` that queues ``tests.record`` tasks and reads the ledger (the ``test_effects``
rows) and the queues. The producer talks to moto directly: only the worker sees the fault.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from config.settings import Settings
from taskapp.aws.sqs import queue_depth
from taskapp.db import engine
from taskapp.queues import dlq_name
from taskapp.sqs.admin.provision import app_specs, provision
from taskapp.sqs.deadletter import read_reason
from tests.support.faultproxy import FaultProxy
from tests.support.queues import drain as drain_queue
from tests.support.queues import prefixed_app
from tests.tasks import effects

#: Puts tests/faults/hooks on a worker's PYTHONPATH: its sitecustomize installs test-only
#: botocore error injection when TASKAPP_TEST_INJECT_SQS_ERRORS is set.
HOOKS = Path(__file__).resolve().parent / "hooks"
#: VisibilityTimeout of a cell's default queue, in seconds (tests.record's hard limit is 10).
VISIBILITY = 12


@dataclass
class Drain:
    """One cell's load: ``tests.record`` tasks tagged ``<run>-<i>`` on a prefix of its own."""

    producer: Any
    sqs: Any
    prefix: str
    env: dict[str, str]
    proxy: FaultProxy
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    sent: int = 0

    def send(self, count: int, sleep: float = 0.0) -> None:
        """Queue ``count`` more tasks."""
        for i in range(self.sent, self.sent + count):
            self.producer.send_task(
                "tests.record", args=[f"{self.run}-{i}"], kwargs={"sleep": sleep}
            )
        self.sent += count

    def runs(self) -> dict[str, int]:
        """Executions so far, by tag."""
        with engine().connect() as conn:
            rows = conn.execute(
                select(effects.c.tag, func.count())
                .where(effects.c.tag.like(f"{self.run}-%"))
                .group_by(effects.c.tag)
            )
            return {tag: count for tag, count in rows}

    def done(self) -> int:
        return len(self.runs())

    def depth(self, queue: str = "default") -> int:
        url = self.sqs.get_queue_url(QueueName=self.prefix + queue)["QueueUrl"]
        return queue_depth(self.sqs, url).total

    def dead_letters(self, queue: str = "default") -> int:
        return self.depth(dlq_name(queue))

    def dead_tags(self, queue: str = "default") -> dict[str, str]:
        """The tags of the dead letters, with each letter's ``taskapp.reason`` (``max-receives``
        if SQS moved it: a message whose receives were lost in a fault, as on AWS)."""
        url = self.sqs.get_queue_url(QueueName=self.prefix + dlq_name(queue))["QueueUrl"]
        tags = {}
        for message in drain_queue(self.sqs, url, wait=1, expect=self.dead_letters(queue)):
            envelope = json.loads(base64.b64decode(message["Body"]))
            body = envelope["body"]
            if envelope.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args, _, _ = json.loads(body)
            letter = read_reason(message.get("MessageAttributes") or {})
            tags[str(args[0])] = letter.reason if letter else "max-receives"
        return tags


@pytest.fixture
def drain(app: Any, sqs: Any, settings: Settings, provisioned: Any) -> Iterator[Drain]:
    """A fresh prefix, a pass-mode proxy in front of moto, and the worker environment."""
    prefix = f"{settings.queue_prefix}f{uuid.uuid4().hex[:6]}-"
    # Production's maxReceiveCount, not the session's 3: a receive whose answer the fault ate
    # still counts, as it does on AWS (see Drain.dead_tags).
    receives = Settings.model_fields["max_receives"].default
    cell = settings.model_copy(update={"queue_prefix": prefix, "max_receives": receives})
    provision(sqs, cell, app_specs(app))
    # A message whose ack was given up comes back (and meets its claim) within a cell, not after
    # the default queue's derived timeout; heartbeats renew held messages every second anyway.
    url = sqs.get_queue_url(QueueName=prefix + "default")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(VISIBILITY)})
    moto = urlsplit(os.environ["AWS_ENDPOINT_URL"])
    with FaultProxy((moto.hostname or "127.0.0.1", moto.port or 80)) as proxy:
        env = {
            **os.environ,
            "TASKAPP_QUEUE_PREFIX": prefix,
            "AWS_ENDPOINT_URL": proxy.url,
            "TASKAPP_WAIT_TIME_SECONDS": "2",
            "TASKAPP_HEARTBEAT_INTERVAL": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
        }
        yield Drain(prefixed_app(app, prefix), sqs, prefix, env, proxy)
