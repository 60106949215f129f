"""One fault cell's queues, proxy and worker environment, and its ledger of ``tests.record`` runs.

:func:`open_drain` gives a fresh queue prefix (provisioned with DLQs, as in production), a
:class:`~tests.support.faultproxy.FaultProxy` in front of the moto server, and the environment
of a worker that reaches AWS only through that proxy. The producer talks to moto directly: only
the worker sees the fault. The ``drain`` fixture (tests/faults/conftest.py) and the soak
(bench/soak.py) both start from it.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import func, select

from config.settings import Settings
from taskapp.aws.sqs import queue_depth
from taskapp.db import engine
from taskapp.queues import app_specs, dlq_name
from taskapp.sqs.admin.provision import provision
from taskapp.sqs.deadletter import read_reason
from tests.support.faultproxy import FaultProxy
from tests.support.queues import drain as drain_queue
from tests.support.queues import prefixed_app
from tests.tasks import effects

__all__ = ["HOOKS", "VISIBILITY", "WAIT_TIME_SECONDS", "DeadLetter", "Drain", "open_drain"]

#: Puts tests/faults/hooks on a worker's PYTHONPATH: its sitecustomize installs test-only
#: botocore error injection when TASKAPP_TEST_INJECT_SQS_ERRORS is set.
HOOKS = Path(__file__).resolve().parent / "hooks"
#: VisibilityTimeout of a cell's default queue, in seconds (tests.record's hard limit is 10).
VISIBILITY = 12
#: A cell worker's long poll, in seconds: it must resume within twice this after a fault.
WAIT_TIME_SECONDS = 2


class DeadLetter(NamedTuple):
    """One message of a DLQ: its first argument, its task id, and why it is there."""

    first_arg: str
    task_id: str
    reason: str


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

    def read_dead_letters(self, queue: str = "default") -> list[DeadLetter]:
        """Every letter of ``queue``'s DLQ (left invisible for 30 s), with its
        ``taskapp.reason`` (``max-receives`` if SQS moved it: a message whose receives were
        lost in a fault, as on AWS)."""
        url = self.sqs.get_queue_url(QueueName=self.prefix + dlq_name(queue))["QueueUrl"]
        letters = []
        for message in drain_queue(self.sqs, url, wait=1, expect=self.dead_letters(queue)):
            envelope = json.loads(base64.b64decode(message["Body"]))
            body = envelope["body"]
            if envelope.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args, _, _ = json.loads(body)
            letter = read_reason(message.get("MessageAttributes") or {})
            task_id = str(envelope.get("headers", {}).get("id", ""))
            reason = letter.reason if letter else "max-receives"
            letters.append(DeadLetter(str(args[0]) if args else "", task_id, reason))
        return letters

    def dead_tags(self, queue: str = "default") -> dict[str, str]:
        """The tags of the dead letters, with each letter's reason."""
        return {letter.first_arg: letter.reason for letter in self.read_dead_letters(queue)}


@contextmanager
def open_drain(app: Any, sqs: Any, settings: Settings) -> Iterator[Drain]:
    """A fresh prefix, a pass-mode proxy in front of moto, and the worker environment."""
    prefix = f"{settings.queue_prefix}f{uuid.uuid4().hex[:6]}-"
    # Production's maxReceiveCount, not the session's 3: a receive whose answer the fault ate
    # still counts, as it does on AWS (see Drain.read_dead_letters).
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
            "TASKAPP_WAIT_TIME_SECONDS": str(WAIT_TIME_SECONDS),
            "TASKAPP_HEARTBEAT_INTERVAL": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
        }
        yield Drain(prefixed_app(app, prefix), sqs, prefix, env, proxy)
