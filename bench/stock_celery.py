"""Stock Celery, configured the way its documentation says, for the throughput bench.

    BENCH_BROKER=sqs    broker_url "sqs://" (boto3's AWS_ENDPOINT_URL), region and queue prefix
                        only: defaults for wait_time_seconds (10) and polling_interval (1),
                        one SendMessage per task, one DeleteMessage per ack
                        https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/sqs.html
    BENCH_BROKER=redis  redis://127.0.0.1:6379/15
    BENCH_BROKER=amqp   amqp://guest:guest@127.0.0.1:5672//
    BENCH_TUNED=1       (SQS) "stock Celery tuned by configuration alone", as issue 16 defines it:
                        wait_time_seconds=20, polling_interval=0, worker_prefetch_multiplier=10

No result backend (SQS has none; the bench reads task starts over UDP). Run it as
``celery -A stock_celery worker --concurrency 4`` with ``bench/`` on PYTHONPATH.
"""

from __future__ import annotations

import os

from celery import Celery
from throughput_tasks import register

BROKERS = {
    "sqs": "sqs://",
    "redis": "redis://127.0.0.1:6379/15",
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
}
QUEUE = "bench"


def make_app(broker: str, prefix: str = "bstock-", tuned: bool = False) -> Celery:
    """A plain Celery app on ``broker`` (``sqs``, ``redis`` or ``amqp``) with ``bench.noop``;
    ``tuned``: what a careful user sets by configuration alone (SQS only)."""
    app = Celery(f"stock-{broker}", broker=BROKERS[broker], set_as_current=False)
    app.conf.task_default_queue = QUEUE
    if broker == "sqs":
        app.conf.broker_transport_options = {
            "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "queue_name_prefix": prefix,
        }
        if tuned:
            app.conf.broker_transport_options |= {"wait_time_seconds": 20, "polling_interval": 0}
            app.conf.worker_prefetch_multiplier = 10
    register(app)
    return app


app = make_app(
    os.environ.get("BENCH_BROKER", "sqs"),
    os.environ.get("BENCH_QUEUE_PREFIX", "bstock-"),
    tuned=os.environ.get("BENCH_TUNED") == "1",
)
