"""Worker-side failure handling: every failed or unreadable message ends in its DLQ with a reason.

Stock Celery acknowledges (deletes) a failed task's message, acknowledges an undecodable one,
and rejects an unknown one into an endless redelivery loop (kombu#1761, kombu#2421). Here:

* ``Request.on_failure`` (a task raised, gave up retrying, or hit its time limit) copies the
  received message byte for byte to the queue's DLQ with the reason as message attributes, and
  only then lets Celery acknowledge it and record FAILURE.
* ``Consumer`` does the same for poison: bodies that are not Celery messages, unknown task
  names, and malformed task messages. The worker keeps consuming.

If the DLQ cannot be written, the message is rejected instead of acknowledged, so SQS redelivers
it and its RedrivePolicy still dead-letters it in the end: nothing is deleted without a copy.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
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
from celery.worker.consumer import consumer as celery_consumer
from kombu.exceptions import ContentDisallowed

from taskapp.errors import PermanentError, RetryableError
from taskapp.sqs.deadletter import DeadLetter, send_dead_letter
from taskapp.sqs.transport import receive_count

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


def classify(exc: BaseException) -> str:
    """The dead-letter reason for a task failure."""
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, (RetryableError, MaxRetriesExceededError)):
        return "retries-exhausted"
    if isinstance(exc, TimeLimitExceeded):
        return "timeout"
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

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = _unwrap(exc_info.exception)
        if not isinstance(exc, NOT_DEAD_LETTERS) and self.task.acks_late:
            letter = DeadLetter.from_exception(
                classify(exc),
                exc,
                attempts=int(self._request_dict.get("retries") or 0) + 1,
                task_name=self.name,
                task_id=self.id,
                source_queue=self.delivery_info.get("routing_key", ""),
            )
            if not dead_letter_message(self._message, letter):
                # Leave the message to SQS (redelivery, then its RedrivePolicy) rather than ack.
                self.reject(requeue=False)
                return None
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )


class Consumer(celery_consumer.Consumer):
    """Celery's consumer, dead-lettering poison instead of dropping or looping on it."""

    def _poison(
        self, message: Any, exc: BaseException | None, why: str, reason: str = "poison"
    ) -> None:
        headers = message.headers or {}
        info = message.delivery_info
        letter = DeadLetter(
            reason=reason,
            error_type=type(exc).__name__ if exc else "UnknownMessage",
            error_message=str(exc) if exc else why,
            attempts=receive_count(info.get("sqs_message") or {}),
            task_name=str(headers.get("task", "")),
            task_id=str(headers.get("id", "")),
            source_queue=info.get("routing_key", ""),
        )
        if dead_letter_message(message, letter):
            message.ack()
        else:
            message.reject_log_error(logger, self.connection_errors)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        # kombu wraps the signing serializer's SecurityError (forged, tampered) in DecodeError.
        causes = (exc, exc.__cause__, exc.__context__, *exc.args)
        forged = any(isinstance(cause, SecurityError) for cause in causes)
        self._poison(message, exc, "undecodable body", "signature" if forged else "poison")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._poison(message, None, "not a Celery task message")

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        unsigned = isinstance(exc, ContentDisallowed) and self.app.conf.task_serializer == "auth"
        self._poison(message, exc, "invalid task message", "signature" if unsigned else "poison")

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        headers = message.headers or {}
        name = headers.get("task", "?")
        self._poison(message, NotRegistered(name), f"unknown task {name!r}")
        if "id" in headers:
            self.app.backend.mark_as_failure(headers["id"], NotRegistered(name))
