"""taskapp: Celery task families on Amazon SQS. ``celery -A taskapp worker`` finds ``app`` here."""

from taskapp.app import app
from taskapp.flower_setup import hook_flower
from taskapp.logs import hook_logs
from taskapp.sqs.enqueue import enqueue_many
from taskapp.tracing import hook_tracing

__all__ = ["app", "enqueue_many"]

hook_logs()  # TASKAPP_LOG_FORMAT=json: JSON lines in worker, beat and Flower (taskapp/logs.py)
hook_flower()  # in a `celery -A taskapp flower` process: project set-up and the auth guard
hook_tracing()  # TASKAPP_TRACING / OTEL_EXPORTER_OTLP_ENDPOINT: OpenTelemetry (taskapp/tracing.py)
