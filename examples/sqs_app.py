"""A Celery app on SQS with taskapp's SQS extension only (``pip install taskapp-sqs``).

    celery -A sqs_app worker -E -Q work     # create_queues() first, once
    celery -A sqs_app flower                # events and inspect over SNS: Flower sees the worker

``remind.apply_async(countdown=3600)`` waits in SQS (DelaySeconds hops), not in a worker past
its visibility timeout; ``refuse.delay(42)`` lands in ``work-dlq`` with reason ``permanent``.
"""

import os
from types import SimpleNamespace

from celery import Celery

import taskapp.sqs
from taskapp.sqs.admin.provision import provision
from taskapp.sqs.boto import client
from taskapp.sqs.naming import QueueSpec

REGION, PREFIX = os.environ.get("AWS_REGION", "us-east-1"), os.environ.get("QUEUE_PREFIX", "ex-")
app = Celery("example", broker="sqs://")
app.conf.update(
    task_default_queue="work",
    task_acks_late=True,
    worker_send_task_events=True,
    broker_transport_options={"region": REGION, "queue_name_prefix": PREFIX},
)
taskapp.sqs.install(app, permanent=(ValueError,))  # ValueError: a dead letter, never a retry


def create_queues(visibility: int = 30) -> None:
    """The work queue, its DLQ and redrive policy (idempotent)."""
    where = SimpleNamespace(region=REGION, aws_endpoint_url=None, queue_prefix=PREFIX)
    env = SimpleNamespace(**vars(where), max_receives=3, wait_time_seconds=10, sqs_kms_key=None)
    provision(client("sqs", REGION), env, [QueueSpec("work", visibility, visibility, ())])


@app.task(name="example.remind")
def remind(note: str) -> str:
    """Run when due."""
    return f"reminded: {note}"


@app.task(name="example.refuse")
def refuse(order: int) -> None:
    """Always refuse: its message goes to the DLQ with the reason."""
    raise ValueError(f"order {order} cannot be shipped")
