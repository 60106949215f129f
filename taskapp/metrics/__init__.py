"""Metrics Prometheus scrapes from ``taskapp metrics``: queues, dead letters, claim checks,
idempotency claims and worker heartbeats, read from SQS, S3 and the database."""

from taskapp.metrics.exporter import Exporter, requests_per_hour

__all__ = ["Exporter", "requests_per_hour"]
