"""``install(app)``: turn the SQS layer on for one Celery app, and only that app.

What it does to ``app`` (and nothing to any other app in the process):

* **transport**: ``broker_transport`` becomes :class:`taskapp.sqs.transport.Transport` when the
  app sets none (the URL stays ``sqs://``: boto3's endpoint and credential chain apply);
* **consumer**: ``worker_consumer`` becomes :class:`taskapp.sqs.worker.Consumer` (poison is
  dead-lettered with its reason) unless the app chose its own;
* **request and strategy**: the app's base task class (``app.Task``, a class of this app's
  own) gets :class:`taskapp.sqs.worker.Request` (failures dead-lettered with reasons) and
  :func:`taskapp.sqs.signing.strategy` where it still has Celery's defaults;
* **bootstep**: the visibility heartbeat (:mod:`taskapp.sqs.heartbeat`);
* **publish hooks**: countdown/eta become SQS ``DelaySeconds`` hops, FIFO queues get their
  group and deduplication ids (:mod:`taskapp.sqs.delay`), and with ``task_serializer="auth"``
  the signature covers the deciding headers (:func:`taskapp.sqs.signing.seal`). Celery's
  ``before_task_publish`` names only the task, not the app, so the app's task sender marks
  what it publishes (a context variable) and the one receiver acts on marked messages only;
* **transport options**: the receive attributes the extension reads are fetched by default
  (``fetch_message_attributes``); every option is read from ``broker_transport_options``
  (the table in the README, "The SQS extension").

What belongs to the application reaches the extension through ``install``'s arguments, never
through an import (the extension imports nothing of taskapp's, enforced by import-linter):

* ``permanent`` / ``retryable``: the exception classes the worker sorts into the dead-letter
  reasons ``permanent`` and ``retries-exhausted`` (everything else is ``timeout``, ``crash``...);
* ``unavailable``: exceptions that say the app's own database could not be reached; such a task
  comes back later instead of being dead-lettered (:mod:`taskapp.sqs.unavailable`);
* ``already_done(task, key)``: whether a claim-checked message whose S3 object is gone was
  already completed (then it is a duplicate, acknowledged), from the ``TaskappIdempotency``
  pointer attribute; without it such a message is a dead letter;
* ``on_runs_renewed`` / ``on_runs_lost``: receivers of :data:`taskapp.sqs.heartbeat.runs_renewed`
  and ``runs_lost``, connected for this app's worker only (the signals are sent by the app).
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from celery import signals
from celery.app.defaults import DEFAULTS

from taskapp.sqs.heartbeat import runs_lost, runs_renewed

__all__ = ["Verdicts", "install", "verdicts", "TRANSPORT", "DEFAULT_OPTIONS"]

TRANSPORT = "taskapp.sqs.transport:Transport"
CONSUMER = "taskapp.sqs.worker:Consumer"
REQUEST = "taskapp.sqs.worker:Request"
STRATEGY = "taskapp.sqs.signing:strategy"
HEARTBEAT = "taskapp.sqs.heartbeat:VisibilityHeartbeat"

#: Transport options the extension sets unless the app does: receive counts (redelivery,
#: dead-letter attempts) and message attributes (dead-letter reasons, claim-check pointers).
DEFAULT_OPTIONS: dict[str, Any] = {
    "fetch_message_attributes": {
        "MessageSystemAttributeNames": [
            "ApproximateReceiveCount",
            "SentTimestamp",
            "MessageGroupId",
        ],
        "MessageAttributeNames": [".*"],
    },
}

Receiver = Callable[..., Any]
ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class Verdicts:
    """How the application's own failures read in the worker (see the module docstring)."""

    permanent: ExceptionTypes = ()
    retryable: ExceptionTypes = ()
    unavailable: ExceptionTypes = ()
    already_done: Callable[[str, str], bool] | None = None


_verdicts: weakref.WeakKeyDictionary[Any, Verdicts] = weakref.WeakKeyDictionary()
#: The app whose task sender is publishing right now (set around each send_task_message).
_publishing: contextvars.ContextVar[Any] = contextvars.ContextVar("taskapp_sqs_publishing")


def verdicts(app: Any) -> Verdicts:
    """What ``install`` was told about ``app``'s failures (nothing, for an app without it)."""
    return _verdicts.get(app) or Verdicts()


def install(
    app: Any,
    *,
    permanent: Iterable[type[BaseException]] = (),
    retryable: Iterable[type[BaseException]] = (),
    unavailable: Iterable[type[BaseException]] = (),
    already_done: Callable[[str, str], bool] | None = None,
    on_runs_renewed: Iterable[Receiver] = (),
    on_runs_lost: Iterable[Receiver] = (),
) -> None:
    """Turn the SQS layer on for ``app`` (a :class:`celery.Celery`); see the module docstring."""
    _verdicts[app] = Verdicts(tuple(permanent), tuple(retryable), tuple(unavailable), already_done)
    base = app.Task
    if base.Request == "celery.worker.request:Request":
        base.Request = REQUEST
    if base.Strategy == "celery.worker.strategy:default":
        base.Strategy = STRATEGY
    app.steps["consumer"].add(HEARTBEAT)
    _mark_publishing(app)
    signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid=__name__)
    for receiver in on_runs_renewed:
        runs_renewed.connect(receiver, sender=app, weak=False)
    for receiver in on_runs_lost:
        runs_lost.connect(receiver, sender=app, weak=False)
    if app.configured:
        _configure(app)
    else:
        app.on_after_configure.connect(_on_configured, sender=app, weak=False)


def _on_configured(sender: Any, **_: Any) -> None:
    _configure(sender)


def _configure(app: Any) -> None:
    """Defaults the app did not set, and Celery's signing serializer when it signs."""
    conf = app.conf
    if not conf.broker_transport and str(conf.broker_url or "").startswith("sqs://"):
        conf.broker_transport = TRANSPORT
    if conf.worker_consumer == DEFAULTS["worker_consumer"]:
        conf.worker_consumer = CONSUMER
    conf.broker_transport_options = {**DEFAULT_OPTIONS, **(conf.broker_transport_options or {})}
    if conf.task_serializer == "auth":
        # Celery's message signing (JSON inside); the strategy checks the sealed headers.
        app.setup_security(allowed_serializers=["json"], serializer="json")


def _mark_publishing(app: Any) -> None:
    """Wrap ``app``'s task sender so the publish hooks know which app publishes."""
    amqp = app.amqp  # per app; its task sender is built on first use, from the app's config
    if getattr(amqp, "_taskapp_sqs", False):
        return
    create = amqp._create_task_sender

    def create_marked() -> Callable[..., Any]:
        send = create()

        def send_task_message(*args: Any, **kwargs: Any) -> Any:
            token = _publishing.set(app)
            try:
                return send(*args, **kwargs)
            finally:
                _publishing.reset(token)

        return send_task_message

    amqp._create_task_sender = create_marked
    amqp.__dict__.pop("send_task_message", None)  # built before install: build it again
    amqp._taskapp_sqs = True


def _before_publish(
    body: Any = None,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    routing_key: str = "",
    **_: Any,
) -> None:
    """The publish hooks, for messages of an app that installed the extension only."""
    app = _publishing.get(None)
    if app is None or app not in _verdicts or headers is None or properties is None:
        return
    from taskapp.sqs.delay import apply_fifo_defaults, apply_native_delay

    hop = (app.conf.broker_transport_options or {}).get("delay_hop", 900)
    apply_native_delay(headers, properties, routing_key or "", hop)
    apply_fifo_defaults(headers, properties, routing_key or "")
    if app.conf.task_serializer == "auth":
        from taskapp.sqs.signing import seal

        seal(body, headers)
