"""Worker-side failure handling: every failed or unreadable message ends in its DLQ with a reason.

Stock Celery acknowledges (deletes) a failed task's message, acknowledges an undecodable one,
and rejects an unknown one into an endless redelivery loop (kombu#1761, kombu#2421). Here:

* ``Request.on_failure`` (a task raised, gave up retrying, or hit its time limit) copies the
  received message byte for byte to the queue's DLQ with the reason as message attributes, and
  only then lets Celery acknowledge it and record FAILURE.
* ``Consumer`` does the same for poison: bodies that are not Celery messages, unknown task
  names, and malformed task messages. The worker keeps consuming.
* Celery's consumer handles only ``InvalidTaskError``, ``ContentDisallowed`` and ``DecodeError``
  while a message becomes a request; anything else (a header of the wrong type, a body of the
  wrong shape, a task strategy that raises, e.g. a signature check) is "Unrecoverable error" and
  the worker exits. ``Consumer`` catches everything there: an ``UnacceptableMessage`` is
  dead-lettered with its reason, anything else with ``poison``. So are the transport's
  refusals (``taskapp/sqs/delivery.py``): messages that could not even be read. One refusal is
  not an error: a duplicate of a claim-checked message that already completed finds its S3
  object deleted; its idempotency record answers it, and it is acknowledged.

If the DLQ cannot be written, the message is rejected instead of acknowledged, so SQS redelivers
it and its RedrivePolicy still dead-letters it in the end: nothing is deleted without a copy.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]  # not in the stubs
from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import (
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SecurityError,
    TimeLimitExceeded,
    WorkerLostError,
)
from celery.worker import request as celery_request
from celery.worker import state as worker_state
from celery.worker.consumer import consumer as celery_consumer
from kombu.exceptions import ContentDisallowed
from kombu.message import Message
from vine import promise

from taskapp.sqs.deadletter import DeadLetter, UnacceptableMessage, send_dead_letter
from taskapp.sqs.delivery import receive_count, refusal_of
from taskapp.sqs.extension import Verdicts, verdicts
from taskapp.sqs.heartbeat import RUN_TOKEN, runs_lost
from taskapp.sqs.shape import check_task_message
from taskapp.sqs.unavailable import MAX_WAITS, come_back, unavailable, wait_delay, waits_of

__all__ = ["Request", "Consumer", "classify", "dead_letter_message"]

logger = logging.getLogger(__name__)

#: Failures that are not the task's verdict on its message: Celery requeues or drops these.
NOT_DEAD_LETTERS = (
    Retry,
    Ignore,
    Reject,
    WorkerLostError,
    SystemExit,
    KeyboardInterrupt,
    MemoryError,
)


def classify(exc: BaseException, app_verdicts: Verdicts | None = None) -> str:
    """The dead-letter reason for a task failure, with the app's own error classes."""
    known = app_verdicts or Verdicts()
    if isinstance(exc, known.permanent):
        return "permanent"
    if isinstance(exc, (*known.retryable, MaxRetriesExceededError)):
        return "retries-exhausted"
    if isinstance(exc, TimeLimitExceeded):
        return "timeout"
    if unavailable(exc, known.unavailable):
        return "unavailable"
    return "crash"


def dead_letter_message(message: Any, letter: DeadLetter) -> bool:
    """Copy a received kombu message to its queue's DLQ; False if it is not an SQS message or
    the DLQ could not be written."""
    info = message.delivery_info
    sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
    if not sqs_message or not queue_url:
        return False
    try:
        sqs = message.channel.sqs(
            queue=message.channel.canonical_queue_name(info.get("routing_key", ""))
        )
        system = sqs_message.get("Attributes") or {}
        fifo_ids = (system.get("MessageGroupId", "default"), sqs_message["MessageId"])
        send_dead_letter(
            sqs,
            queue_url,
            sqs_message["Body"],
            letter,
            sqs_message.get("MessageAttributes"),
            fifo_ids,
        )
    except (ClientError, BotoCoreError, OSError) as exc:
        logger.error("could not dead-letter message from %s: %r", queue_url, exc)
        return False
    info["dead_lettered"] = True  # the ack must keep a claim-checked payload for redrives
    logger.warning(
        "dead-lettered task=%s id=%s queue=%s reason=%s error=%s",
        letter.task_name or "-",
        letter.task_id or "-",
        letter.source_queue,
        letter.reason,
        letter.error_type,
    )
    return True


def _unwrap(exc: BaseException) -> BaseException:
    return exc.exc if isinstance(exc, ExceptionWithTraceback) else exc


class Request(celery_request.Request):
    """A task request whose failures are dead-lettered with their reason before the ack."""

    # Set by Celery's Request.__init__; private, so the celery-types stubs leave them out.
    _request_dict: dict[str, Any]
    _message: Message

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        # This run's token, whatever the message says: its idempotency claim is held under it,
        # and the heartbeat renews the claim by it while the run is active (heartbeat.py).
        self._request_dict[RUN_TOKEN] = uuid.uuid4().hex

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = _unwrap(exc_info.exception)
        if isinstance(exc, WorkerLostError) and self._request_dict.get(RUN_TOKEN):
            # Before Celery requeues the message: its next delivery finds the claim free.
            runs_lost.send(sender=self.app, tokens={self._request_dict[RUN_TOKEN]})
        if not isinstance(exc, NOT_DEAD_LETTERS) and self.task.acks_late:
            known = verdicts(self.app)
            if unavailable(exc, known.unavailable) and self._wait_for_database(exc):
                # What Celery's on_failure does first: the request leaves the worker's
                # reserved and active sets (else the heartbeat renews its message for ever).
                worker_state.task_ready(self)
                return None
            letter = DeadLetter.from_exception(
                classify(exc, known),
                exc,
                attempts=int(self._request_dict.get("retries") or 0) + 1,
                task_name=self.name,
                task_id=self.id,
                source_queue=self.delivery_info.get("routing_key") or "",
            )
            if not dead_letter_message(self._message, letter):
                # Leave the message to SQS (redelivery, then its RedrivePolicy) rather than ack.
                self.reject(requeue=False)
                worker_state.task_ready(self)
                return None
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def _wait_for_database(self, exc: BaseException) -> bool:
        """Send the message to come back later (``taskapp/sqs/unavailable.py``) unless it has
        waited ``MAX_WAITS`` times already (then False: it is dead-lettered as ``unavailable``)."""
        waits = waits_of(self.delivery_info.get("sqs_message") or {})
        if waits >= MAX_WAITS:
            return False
        if come_back(self._message):
            self.acknowledge()
        else:
            self.reject(requeue=False)
        logger.warning(
            "database unavailable task=%s id=%s waits=%d, back in %ss: %s",
            self.name,
            self.id,
            waits + 1,
            wait_delay(waits),
            type(exc).__name__,
        )
        return True


def refusal_reason(exc: BaseException) -> str:
    """The dead-letter reason of a message that could not become a request because of ``exc``."""
    if isinstance(exc, UnacceptableMessage):
        return exc.reason
    causes = (exc, exc.__cause__, exc.__context__, *exc.args)
    return "signature" if any(isinstance(c, SecurityError) for c in causes) else "poison"


def already_done(app: Any, identity: str | None) -> bool:
    """Whether a pointer's idempotency attribute (JSON ``{"task", "key"}``) names a run the app
    says completed (``install(already_done=...)``): then a delivery whose claim-check object is
    gone is a duplicate."""
    import json

    check = verdicts(app).already_done
    if check is None:
        return False
    try:
        parts = json.loads(identity or "")
        return check(str(parts["task"]), str(parts["key"]))
    except (ValueError, KeyError, TypeError):
        return False


_UNDECODABLE = object()


def _decoded(message: Any) -> Any:
    """The message's body, or ``_UNDECODABLE``: Celery's own handler then reports that
    (undecodable, unsigned or disallowed content) with its own reason."""
    try:
        return message.decode()  # kombu caches it: Celery's handler does not decode again
    except Exception:  # noqa: BLE001 - any decoding failure is Celery's to report, below
        return _UNDECODABLE


class Consumer(celery_consumer.Consumer):
    """Celery's consumer, dead-lettering poison instead of dropping, looping on it or exiting."""

    connection_errors: tuple[type[BaseException], ...]  # set in __init__; not in the stubs

    def create_task_handler(self, promise: Any = promise) -> Any:
        on_task_received = super().create_task_handler(promise)

        def on_message(message: Any) -> None:
            refusal = refusal_of(message)
            if refusal is not None:
                self._on_refusal(message, refusal)
                return
            try:
                body = _decoded(message)
                if body is not _UNDECODABLE:
                    check_task_message(message.headers, body)
                on_task_received(message)
            except Exception as exc:  # the message-to-request boundary: Celery exits otherwise
                self._on_unexpected(message, exc)

        return on_message

    def _on_refusal(self, message: Any, refusal: dict[str, Any]) -> None:
        if refusal.get("missing") and already_done(self.app, refusal.get("idempotency")):
            logger.info(
                "duplicate of a completed claim-checked message: %s", refusal["idempotency"]
            )
            message.ack()
            return
        self._poison(
            message,
            str(refusal.get("reason") or "poison"),
            str(refusal.get("error_type") or "UnacceptableMessage"),
            str(refusal.get("error_message") or ""),
        )

    def _on_unexpected(self, message: Any, exc: Exception) -> None:
        if message.acknowledged or message.delivery_info.get("dead_lettered"):
            # Whatever raised had already settled the message (e.g. Celery's own handler).
            logger.error("error after a message was settled: %r", exc, exc_info=True)
            return
        logger.error("message could not become a request: %r", exc, exc_info=True)
        self._poison(message, refusal_reason(exc), type(exc).__name__, str(exc))
        # The strategy may have reserved a request before it raised (a time limit that is not a
        # pair fails in execute_using_pool): forget it, or heartbeats renew a deleted message.
        scheduled = worker_state.scheduled_requests  # type: ignore[attr-defined]  # not in the stubs
        for request in list(worker_state.reserved_requests | scheduled):
            if getattr(request, "_message", None) is message:
                worker_state.task_ready(request)

    def _poison(self, message: Any, reason: str, error_type: str, error_message: str) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        info = message.delivery_info
        letter = DeadLetter(
            reason=reason,
            error_type=error_type,
            error_message=error_message,
            attempts=receive_count(info.get("sqs_message") or {}),
            task_name=_text(headers.get("task")),
            task_id=_text(headers.get("id")),
            source_queue=_text(info.get("routing_key")),
        )
        if dead_letter_message(message, letter):
            message.ack()
        else:
            message.reject_log_error(logger, self.connection_errors)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        # kombu wraps the signing serializer's SecurityError (forged, tampered) in DecodeError.
        self._poison(message, refusal_reason(exc), type(exc).__name__, str(exc))

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._poison(message, "poison", "UnknownMessage", "not a Celery task message")

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        unsigned = isinstance(exc, ContentDisallowed) and self.app.conf.task_serializer == "auth"
        reason = "signature" if unsigned else refusal_reason(exc)
        self._poison(message, reason, type(exc).__name__, str(exc))

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        headers = message.headers or {}
        name = _text(headers.get("task")) or "?"
        error = NotRegistered(name)
        self._poison(message, "poison", type(error).__name__, str(error))
        if isinstance(headers.get("id"), str):
            self.app.backend.mark_as_failure(headers["id"], error)


def _text(value: Any) -> str:
    """A header value as dead-letter text: strings as they are, anything else as nothing."""
    return value if isinstance(value, str) else ""
