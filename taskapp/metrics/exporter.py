"""``taskapp metrics``: a Prometheus exporter for what Flower's ``/metrics`` does not see.

Flower exports what it learns from Celery events: tasks and workers. Operators of a Celery app
on SQS also alert on queue depth and age, dead letters, claim-check objects, idempotency claims
and whether workers are alive. Those live in SQS, S3 and the database, so one small process reads
them (:mod:`taskapp.metrics.readings`) and serves them on ``/metrics``.

Every read costs requests, and SQS bills each one. So the exporter reads at most once per
``interval`` seconds, however many Prometheus servers scrape it and however often: a scrape
within the interval is answered from the last reading, and concurrent scrapes wait for the one
read in progress. :func:`requests_per_hour` says what that costs; ``taskapp metrics`` prints it
at start-up. Set the interval to the scrape interval (a shorter one buys nothing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings
from taskapp.aws.sqs import queue_is_missing
from taskapp.metrics.readings import (
    ClaimChecks,
    QueueReading,
    claim_checks,
    idempotency_claims,
    read_queue,
    worker_leases,
)
from taskapp.queues import dlq_name, queue_names
from taskapp.workerstats import read as worker_counters

__all__ = ["Exporter", "Snapshot", "requests_per_hour"]

logger = logging.getLogger(__name__)

#: What a failed read of one source raises; the rest of the reading still goes out.
READ_ERRORS = (ClientError, BotoCoreError, SQLAlchemyError, OSError)


def requests_per_hour(queues: int, dlqs: int, interval: float) -> tuple[int, int, int]:
    """SQS requests per hour: (fewest, most, added per running worker).

    Each read makes one GetQueueAttributes per queue and DLQ and one ListQueues (worker
    leases); a DLQ that holds messages is also peeked (one ReceiveMessage), and each worker's
    lease is one ListQueueTags. Queue URLs are resolved once, at the first read.
    """
    reads = 3600 / interval
    base = queues + dlqs + 1
    return round(reads * base), round(reads * (base + dlqs)), round(reads)


@dataclass
class Snapshot:
    """One reading of every source; a source that failed is missing from it."""

    taken: float
    queues: dict[str, QueueReading] = field(default_factory=dict)
    backlog_age: dict[str, float] = field(default_factory=dict)
    workers: dict[str, float] | None = None
    claim_checks: ClaimChecks | None = None
    idempotency: dict[str, float] | None = None
    worker_counters: dict[str, dict[str, float]] | None = None


class Exporter(Collector):
    """A Prometheus collector that reads SQS, S3 and the database at most once per interval."""

    def __init__(
        self,
        settings: Settings,
        interval: float,
        *,
        sqs: Any = None,
        s3: Any = None,
        engine: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from taskapp import aws, db

        self.settings = settings
        self.interval = interval
        # Quick clients: a scrape must answer within Prometheus's timeout, not retry for minutes.
        self.sqs = sqs or aws.client("sqs", settings, profile="quick")
        self.s3 = s3 or aws.client("s3", settings, profile="quick")
        self.engine = engine or db.engine(settings.database_url.get_secret_value())
        self.clock = clock
        self.queues = [(n, False) for n in queue_names()] + [
            (dlq_name(n), True) for n in queue_names()
        ]
        self._urls: dict[str, str] = {}
        self._last_empty: dict[str, float] = {}
        self._errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0

    def cost(self) -> tuple[int, int, int]:
        """:func:`requests_per_hour` for this exporter's queues and interval."""
        dlqs = sum(1 for _, is_dlq in self.queues if is_dlq)
        return requests_per_hour(len(self.queues) - dlqs, dlqs, self.interval)

    def snapshot(self) -> Snapshot:
        """The last reading, or a new one if it is older than the interval."""
        with self._lock:  # concurrent scrapes wait here and share the one read
            if self._snapshot is None or self.clock() - self._read_at >= self.interval:
                self._snapshot = self._read()
                self._read_at = self.clock()
            return self._snapshot

    def _read(self) -> Snapshot:
        now = time.time()
        snap = Snapshot(taken=now)
        for name, is_dlq in self.queues:
            reading = self._guard("sqs", partial(self._read_queue, name, is_dlq, now))
            if reading is None:
                continue
            snap.queues[name] = reading
            if not is_dlq:
                if reading.visible == 0:
                    self._last_empty[name] = now
                snap.backlog_age[name] = now - self._last_empty.setdefault(name, now)
        prefix = self.settings.queue_prefix
        snap.workers = self._guard("workers", lambda: worker_leases(self.sqs, prefix, now))
        bucket = self.settings.bucket
        snap.claim_checks = self._guard("s3", lambda: claim_checks(self.s3, bucket, now))
        snap.idempotency = self._guard("database", lambda: idempotency_claims(self.engine, now))
        snap.worker_counters = self._guard("database", lambda: worker_counters(self.engine))
        return snap

    def _read_queue(self, name: str, is_dlq: bool, now: float) -> QueueReading | None:
        url = self._urls.get(name)
        if url is None:
            try:
                url = self._urls[name] = self.sqs.get_queue_url(
                    QueueName=self.settings.queue_prefix + name
                )["QueueUrl"]
            except ClientError as exc:
                if queue_is_missing(exc):
                    return None  # not provisioned (yet): asked again at the next read
                raise
        reading = read_queue(self.sqs, url, is_dlq, now)
        if reading is None:
            self._urls.pop(name, None)  # deleted: resolve it again next time
        return reading

    def _guard(self, source: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except READ_ERRORS as exc:
            self._errors[source] = self._errors.get(source, 0) + 1
            logger.warning("metrics: could not read %s: %s", source, exc)
            return None

    def collect(self) -> Iterator[Metric]:
        """The metrics of the current snapshot (Prometheus calls this on each scrape)."""
        snap = self.snapshot()
        yield from _queue_metrics(snap)
        yield from _other_metrics(snap)
        errors = CounterMetricFamily(
            "taskapp_metrics_read_errors",
            "Reads of a source (sqs, workers, s3, database) that failed.",
            labels=["source"],
        )
        for source in ("sqs", "workers", "s3", "database"):
            errors.add_metric([source], self._errors.get(source, 0))
        yield errors
        yield GaugeMetricFamily(
            "taskapp_metrics_read_timestamp_seconds",
            "When the exporter last read its sources (Unix time).",
            value=snap.taken,
        )


def _queue_metrics(snap: Snapshot) -> Iterator[Metric]:
    messages = GaugeMetricFamily(
        "taskapp_queue_messages",
        "Approximate messages per queue (GetQueueAttributes), by state.",
        labels=["queue", "kind", "state"],
    )
    oldest = GaugeMetricFamily(
        "taskapp_queue_oldest_message_age_seconds",
        "Age of the oldest of up to 10 peeked messages of a dead-letter queue.",
        labels=["queue"],
    )
    backlog = GaugeMetricFamily(
        "taskapp_queue_backlog_age_seconds",
        "Seconds since the exporter last saw the work queue without a visible message.",
        labels=["queue"],
    )
    dead = GaugeMetricFamily(
        "taskapp_dead_letters",
        "Dead letters per reason: a peek's taskapp.reason shares, scaled to the DLQ's depth.",
        labels=["queue", "reason"],
    )
    for name, q in snap.queues.items():
        kind = "dlq" if q.dead is not None else "work"
        for state, value in (
            ("visible", q.visible),
            ("in_flight", q.in_flight),
            ("delayed", q.delayed),
        ):
            messages.add_metric([name, kind, state], value)
        if q.dead is not None:
            if q.dead.oldest_age is not None:
                oldest.add_metric([name], q.dead.oldest_age)
            for reason, count in sorted(q.dead.estimate(q.visible).items()):
                dead.add_metric([name, reason], count)
    for name, age in snap.backlog_age.items():
        backlog.add_metric([name], age)
    yield from (messages, oldest, backlog, dead)


def _other_metrics(snap: Snapshot) -> Iterator[Metric]:
    if snap.workers is not None:
        workers = GaugeMetricFamily(
            "taskapp_worker_heartbeat_age_seconds",
            "Seconds since a worker last renewed the lease of its remote-control queue.",
            labels=["worker"],
        )
        for owner, age in sorted(snap.workers.items()):
            workers.add_metric([owner], age)
        yield workers
        yield GaugeMetricFamily(
            "taskapp_workers", "Workers with a remote-control queue.", value=len(snap.workers)
        )
    if snap.claim_checks is not None:
        cc = snap.claim_checks
        yield GaugeMetricFamily(
            "taskapp_claim_check_objects", "Claim-check payloads in S3.", value=cc.objects
        )
        yield GaugeMetricFamily(
            "taskapp_claim_check_bytes", "Bytes of claim-check payloads in S3.", value=cc.bytes
        )
        if cc.oldest_age is not None:
            yield GaugeMetricFamily(
                "taskapp_claim_check_oldest_object_age_seconds",
                "Age of the oldest claim-check payload (one outliving every queue's retention "
                "is an orphan).",
                value=cc.oldest_age,
            )
    if snap.idempotency is not None:
        claims = GaugeMetricFamily(
            "taskapp_idempotency_claims",
            "Idempotency claims: running (live lease), expired (holder outlived it), done.",
            labels=["state"],
        )
        for state in ("running", "expired", "done"):
            claims.add_metric([state], snap.idempotency[state])
        yield claims
        yield GaugeMetricFamily(
            "taskapp_idempotency_longest_wait_seconds",
            "How long a duplicate delivery of the longest live claim would wait now.",
            value=snap.idempotency["longest_wait"],
        )
    if snap.worker_counters is not None:
        yield from _worker_counter_metrics(snap.worker_counters)


#: (metric, ``worker_stats`` column, help) of the counters each worker publishes itself.
WORKER_COUNTERS = (
    (
        "taskapp_heartbeat_renewals",
        "renewals",
        "Messages whose visibility a worker's heartbeat renewed (published once per tick).",
    ),
    (
        "taskapp_heartbeat_failures",
        "failures",
        "Messages whose visibility a worker's heartbeat failed to renew (refused or an error).",
    ),
    (
        "taskapp_idempotency_waits",
        "waits",
        "Duplicate deliveries a worker sent back to wait for another delivery's live claim.",
    ),
)


def _worker_counter_metrics(rows: dict[str, dict[str, float]]) -> Iterator[Metric]:
    for name, column, help_text in WORKER_COUNTERS:
        family = CounterMetricFamily(name, help_text, labels=["worker"])
        for worker, row in sorted(rows.items()):
            family.add_metric([worker], row[column])
        yield family
