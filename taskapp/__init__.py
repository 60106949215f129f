"""taskapp: Celery task families on Amazon SQS. ``celery -A taskapp worker`` finds ``app`` here."""

import pkgutil

# taskapp.sqs is its own distribution (packages/taskapp-sqs); installed elsewhere on sys.path
# than this package, it is still found under the one name.
__path__ = pkgutil.extend_path(__path__, __name__)

from taskapp.app import app  # noqa: E402 - after __path__ is complete
from taskapp.flower_setup import hook_flower  # noqa: E402
from taskapp.logs import hook_logs  # noqa: E402
from taskapp.sqs.enqueue import enqueue_many  # noqa: E402
from taskapp.tracing import hook_tracing  # noqa: E402

__all__ = ["app", "enqueue_many"]

hook_logs()  # TASKAPP_LOG_FORMAT=json: JSON lines in worker, beat and Flower (taskapp/logs.py)
hook_flower()  # in a `celery -A taskapp flower` process: project set-up and the auth guard
hook_tracing()  # TASKAPP_TRACING / OTEL_EXPORTER_OTLP_ENDPOINT: OpenTelemetry (taskapp/tracing.py)
