"""OpenTelemetry traces from ``delay()`` to the SMTP call, across SQS.

Why: a request that enqueues a task and the task's run on a worker are two processes joined only
by an SQS message, so a trace must ride inside that message. What: with ``TASKAPP_TRACING`` set
(or ``auto``, the default, and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set), importing ``taskapp``
installs the OpenTelemetry SDK and the Celery, botocore and SQLAlchemy instrumentations in every
process that does: the application (producer), the worker and its pool children, beat.

How the context travels: the Celery instrumentation opens an ``apply_async/<task>`` span in
``before_task_publish`` and injects ``traceparent`` into the message headers; on SQS the headers
are inside the body envelope, so every path that moves the body keeps them: a countdown hop
(``taskapp/sqs/delivery.py`` re-sends the same body), a claim-checked message (the S3 object is
the same body), a dead letter and its redrive (same body again). A retry publishes a new message
from inside the run span, so it carries that span's context. The worker's ``run/<task>`` span
takes the header as its parent. ``taskapp/sqs/signing.py`` seals only the deciding headers, so
``traceparent`` neither breaks a signed message nor is covered by its signature (it is a hint
for tracing, never a reason to run anything).

The SMTP send (``taskapp/email/smtp.py``) and the image download over pycurl
(``taskapp/images/fetch.py``) have no instrumentation package; they open a span through the
OpenTelemetry *API*, which is a no-op while no SDK is installed.

Cost: with tracing off (the default), nothing here imports the SDK or any instrumentation: one
cached settings read at import. With tracing on, spans are batched (``BatchSpanProcessor``, its
``OTEL_BSP_*`` variables apply) and exported off the task's thread; bench/tracing.py measures it.

Limit: opentelemetry-instrumentation-sqlalchemy 0.66b1 declares ``sqlalchemy < 2.1``; we run
2.1 and install it with its dependency check skipped (the engine events it uses are unchanged;
tests/operate/test_tracing.py checks that its spans arrive).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["mode", "hook_tracing", "install", "uninstall", "JsonLinesExporter", "exporter_for"]

_lock = threading.Lock()
_installed: dict[str, Any] = {}


def mode() -> str:
    """The tracing mode in force: ``off``, ``console``, ``otlp`` or ``file:<path>``."""
    from config.settings import load_settings

    chosen = load_settings().tracing
    if chosen != "auto":
        return chosen
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return "otlp" if endpoint else "off"


def hook_tracing() -> None:
    """Install tracing in this process if the settings ask for it (``taskapp/__init__.py``)."""
    from config.settings import SettingError

    try:
        chosen = mode()
    except SettingError:
        return  # a bad setting: the process refuses to start later, with its one-line message
    if chosen != "off":
        install(exporter_for(chosen))


def exporter_for(chosen: str) -> SpanExporter:
    """The span exporter of a mode: OTLP over HTTP, or JSON lines to stderr or a file."""
    if chosen == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers and timeout from the OTEL_* variables
    if chosen.startswith("file:"):
        return cast("SpanExporter", JsonLinesExporter(chosen.removeprefix("file:")))
    return cast("SpanExporter", JsonLinesExporter(None))


def install(exporter: SpanExporter, *, set_global: bool = True) -> TracerProvider:
    """Install a tracer provider exporting to ``exporter`` and the instrumentations; once."""
    with _lock:
        if _installed:
            return _installed["provider"]  # type: ignore[no-any-return]
        from celery import signals
        from opentelemetry import trace
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over this default.
        provider = TracerProvider(resource=Resource.create({"service.name": "taskapp"}))
        # Its export thread is restarted in each forked pool child by the SDK itself.
        provider.add_span_processor(BatchSpanProcessor(exporter))
        if set_global:
            trace.set_tracer_provider(provider)
        instrumentors: list[Any] = [_celery_instrumentor(), BotocoreInstrumentor]  # untyped
        for instrumentor in instrumentors:
            instrumentor().instrument(tracer_provider=provider)
        _instrument_sqlalchemy(provider)
        # A prefork child ends without atexit handlers: flush its last spans first.
        signals.worker_process_shutdown.connect(_flush, weak=False)
        _installed["provider"] = provider
        return provider


@functools.cache  # one class: BaseInstrumentor keeps one instance per class
def _celery_instrumentor() -> Any:
    """The Celery instrumentation, fixed for a task published by a name this process has not
    registered (``app.send_task("email.send")``, or any name in a producer that never imported
    the task's module: ``autodiscover_tasks`` registers them only in a worker).

    0.66b1 looks the publishing task up in the registry and keeps the open ``apply_async`` span
    on the task object; for an unknown name it keeps it nowhere, so the span ended as soon as
    the garbage collector closed its activation, before the message was sent: the SQS send (and
    a claim check's S3 put) were not inside it. A stand-in object per name holds it instead.
    """
    from opentelemetry.instrumentation.celery import CeleryInstrumentor, utils

    class _Unregistered:
        def __init__(self, name: str) -> None:
            self.name = name

    stand_ins: dict[str, _Unregistered] = {}

    def _sender(kwargs: dict[str, Any]) -> dict[str, Any]:
        sender = kwargs.get("sender")
        if isinstance(sender, str) and utils.retrieve_task_from_sender(kwargs) is None:
            return {**kwargs, "sender": stand_ins.setdefault(sender, _Unregistered(sender))}
        return kwargs

    class TaskappCeleryInstrumentor(CeleryInstrumentor):
        def _trace_before_publish(self, *args: Any, **kwargs: Any) -> None:
            super()._trace_before_publish(*args, **_sender(kwargs))  # type: ignore[no-untyped-call]

        @staticmethod
        def _trace_after_publish(*args: Any, **kwargs: Any) -> None:
            CeleryInstrumentor._trace_after_publish(*args, **_sender(kwargs))  # type: ignore[no-untyped-call]

    return TaskappCeleryInstrumentor


def _instrument_sqlalchemy(provider: TracerProvider) -> None:
    import sqlalchemy
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    # taskapp.db bound sqlalchemy's create_engine when it was imported, before this wrapped it.
    import taskapp.db

    taskapp.db.create_engine = sqlalchemy.create_engine  # type: ignore[attr-defined]


def _flush(**_: Any) -> None:
    provider = _installed.get("provider")
    if provider is not None:
        provider.force_flush(5000)


def uninstall() -> None:
    """Undo :func:`install` (tests): remove the instrumentations, shut the provider down."""
    with _lock:
        provider = _installed.pop("provider", None)
        if provider is None:
            return
        from celery import signals
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentors: list[Any] = [
            _celery_instrumentor(),
            BotocoreInstrumentor,
            SQLAlchemyInstrumentor,
        ]
        for instrumentor in instrumentors:
            instrumentor().uninstrument()
        signals.worker_process_shutdown.disconnect(_flush)
        import sqlalchemy

        import taskapp.db

        taskapp.db.create_engine = sqlalchemy.create_engine  # type: ignore[attr-defined]
        provider.shutdown()  # flushes; engines traced meanwhile record into nothing from now on


class JsonLinesExporter:
    """Spans as one JSON object a line, to stderr or appended to a file (``console`` modes).

    A file is opened in append mode and each batch is one ``write``, so the worker's main
    process and its pool children can share one file without tearing lines. The SDK's
    ``SpanExporter`` protocol, without its base class: importing this module loads no SDK.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        text = "".join(span.to_json(indent=None) + "\n" for span in spans)
        if self.path is None:
            sys.stderr.write(text)
            sys.stderr.flush()
        else:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the file is opened per batch."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every batch is written when exported."""
        return True
