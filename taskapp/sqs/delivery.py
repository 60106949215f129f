"""Work-queue delivery: kombu's SQS channel with the fixes taskapp's tasks rely on.

Not selected on its own: :mod:`taskapp.sqs.transport` (the transport ``config/celery.py``
selects) builds its channel on this one. What it changes, and why:

* ``delivery_info["redelivered"]`` is set from SQS's ``ApproximateReceiveCount``. kombu 5.7
  fetches the count but never sets the flag, so "is this a redelivery?" checks always say no.
* A received message whose ETA is still ahead (a delay longer than one SQS hop of at most
  900 s) is re-published with the next hop's ``DelaySeconds`` and deleted, never held in
  memory: see ``taskapp/sqs/delay.py``.
* Bodies over the SQS size limit travel through S3 (claim check, Extended Client format): see
  ``taskapp/sqs/claimcheck.py``. The object is deleted when the message is acknowledged, unless
  the message was dead-lettered.
* An unacknowledged message handed back (warm shutdown, requeue) is visible again at once,
  not after ``wait_time_seconds``.
* A message rejected without requeue on a queue with a RedrivePolicy is made visible again after
  a short exponential backoff (ChangeMessageVisibility), instead of staying invisible for the
  whole visibility timeout. SQS counts each receive and moves the message to the queue's
  dead-letter queue after ``maxReceiveCount`` receives, so a poison message reaches the DLQ in
  seconds, not in ``maxReceiveCount`` x visibility timeout.
* No received message can raise out of the receive path. kombu turns each SQS message into a
  payload (``_message_to_python``) and then a ``Message`` inside the hub's callback, with no
  handler around either: any exception there (a claim-check pointer to nothing, a body that is
  not UTF-8, an envelope of the wrong shape) ends the worker with "Unrecoverable error", and the
  message comes back to stop the next one. Here the conversion, and a trial ``Message`` of its
  result, are checked; a message that fails becomes, on a work queue, a *refusal*: a well-formed
  message with no task and the ``REFUSAL_HEADER`` (why), which the worker's consumer
  (``taskapp/sqs/worker.py``) dead-letters and acknowledges. The SQS message itself is deleted
  only after its DLQ copy is written. On a no-ack queue (events, remote control) it is dropped.
  An S3 failure that says nothing about the message (throttling, an outage) refuses nothing:
  the message is handed back with the redelivery backoff below.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger
from kombu.utils.encoding import bytes_to_str

from taskapp.sqs.acks import AckBatchMixin
from taskapp.sqs.boto import client
from taskapp.sqs.claimcheck import (
    ETA_ATTRIBUTE,
    IDEMPOTENCY_ATTRIBUTE,
    MAX_FETCH_BYTES,
    MissingPayload,
    check_pointer,
    fetch,
    offloader,
    pointer_of,
)
from taskapp.sqs.deadletter import MAX_MESSAGE_CHARS, UnacceptableMessage
from taskapp.sqs.delay import DUE_SLACK, MAX_DELAY_SECONDS, delay_for, remaining_seconds
from taskapp.sqs.kombu_channel import Payload, SQSChannel, SQSMessage
from taskapp.sqs.naming import FIFO_SUFFIX

__all__ = [
    "Channel",
    "REFUSAL_HEADER",
    "receive_count",
    "redelivery_delay",
    "refusal_of",
]

logger = get_logger(__name__)

#: Cap of the visibility backoff applied to a rejected message, in seconds.
MAX_REDELIVERY_DELAY = 60
#: Tries of a restore's hand-back (ChangeMessageVisibility to 0) and the first pause, doubled.
RESTORE_ATTEMPTS = 5
RESTORE_BACKOFF = 0.25
#: Header of a refusal: ``{"reason", "error_type", "error_message"}`` and, for a claim-checked
#: message whose object is gone, ``"missing": True`` and the pointer's ``"idempotency"``.
REFUSAL_HEADER = "taskapp-refusal"


def refusal_of(message: Any) -> dict[str, Any] | None:
    """The refusal a received kombu message stands for, or None for an ordinary message."""
    headers = message.headers
    refusal = headers.get(REFUSAL_HEADER) if isinstance(headers, dict) else None
    return refusal if isinstance(refusal, dict) else None


def receive_count(sqs_message: SQSMessage) -> int:
    """How many times SQS has handed out this message (1 on first delivery)."""
    attributes = sqs_message.get("Attributes") or {}
    try:
        return int(attributes.get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def redelivery_delay(receives: int) -> int:
    """Seconds until a rejected message is visible again: 1, 2, 4, ... capped."""
    backoff: int = 2 ** max(receives - 1, 0)  # int ** int is Any to mypy (negative powers)
    return min(backoff, MAX_REDELIVERY_DELAY)


class Channel(AckBatchMixin, SQSChannel):
    """SQS channel that flags redeliveries, hops long delays and backs off rejected messages."""

    def _new_boto_client(self, service: str, *args: Any, **kwargs: Any) -> Any:
        client = super()._new_boto_client(service, *args, **kwargs)
        threshold = self.transport_options.get("claim_check_threshold")
        if service == "sqs" and threshold:
            handler = offloader(self._s3, self.transport_options["claim_check_bucket"], threshold)
            client.meta.events.register("before-parameter-build.sqs.SendMessage", handler)
        return client

    def _s3(self) -> Any:
        # The channel's region; the endpoint is boto3's own (AWS_ENDPOINT_URL), as for SQS.
        return client("s3", self.region)

    def _claim_check_bucket(self) -> str:
        return str(self.transport_options.get("claim_check_bucket") or "")

    def _accepted_pointer(self, message: SQSMessage) -> tuple[str, str] | None:
        """The pointer of ``message`` if it is one we may read and delete, else None."""
        pointer = pointer_of(message)
        if pointer is None:
            return None
        try:
            check_pointer(pointer, self._claim_check_bucket())
        except UnacceptableMessage:
            return None
        return pointer

    # -- receiving: nothing a message holds may raise out of here --------------------------------
    def _on_messages_ready(self, queue: str, qname: str, messages: dict[str, Any]) -> int:
        # kombu's loop, with hops taken out first and refused no-ack messages left out.
        received = [m for m in messages.get("Messages") or [] if not self._hop(queue, qname, m)]
        if not received:
            return 0
        callback = (self.connection._callbacks or {}).get(qname)
        if callback is None:
            self._release_messages(queue, qname, received)
            return 0
        for message in received:
            payload = self._message_to_python(message, qname, queue)
            if payload is not None:
                callback(payload)
        return len(received)

    def _messages_to_python(self, messages: list[SQSMessage], queue: str) -> list[Payload]:
        converted = super()._messages_to_python(messages, queue)
        return [payload for payload in converted if payload is not None]

    def _get(self, queue: str, timeout: float | None = None) -> Payload:
        # The virtual channel's signature; kombu's SQS channel takes no timeout.
        try:
            return super()._get(queue)
        except IndexError:  # its one message was left out (see _message_to_python)
            raise Empty() from None

    def _message_to_python(
        self, message: SQSMessage, queue_name: str, q_url: str
    ) -> Payload | None:
        """kombu's payload of ``message``; a refusal if it cannot be one; None if left out."""
        noack = queue_name in self._noack_queues
        try:
            payload = self._payload(message, q_url, noack)
            self.Message(payload, channel=self)  # kombu builds it again, outside any handler
        except (BotoCoreError, ClientError, OSError) as exc:
            # S3 (or SQS) failed, not the message: hand it back, it is read again later.
            self._hand_back(message, queue_name, q_url, exc)
            return None
        except Exception as exc:  # the receive path's one boundary: see the module docstring
            return self._refuse(message, queue_name, q_url, exc)
        if noack:
            self._delete_message(queue_name, message)
        return payload

    def _payload(self, message: SQSMessage, q_url: str, noack: bool) -> Payload:
        pointer = pointer_of(message)
        if pointer is not None:
            check_pointer(pointer, self._claim_check_bucket())
            limit = int(self.transport_options.get("claim_check_max_bytes", MAX_FETCH_BYTES))
            body = fetch(self._s3(), pointer, limit)
        else:
            body = message["Body"]
        text = bytes_to_str(self._decode_python_message_body(body))
        payload = self._prepare_json_payload(text)
        if isinstance(payload.get("headers"), dict) and REFUSAL_HEADER in payload["headers"]:
            raise UnacceptableMessage(f"a received message may not carry {REFUSAL_HEADER}")
        if noack:
            if "properties" not in payload:
                raise UnacceptableMessage("not a kombu message")
            return payload  # kombu leaves no-ack payloads as they came
        # The envelope keeps the pointer as "the received message": a dead letter copies the
        # pointer, not the payload, and the ack knows which object to delete.
        return self._envelope_payload(payload, text, message, q_url)

    def _refuse(
        self, message: SQSMessage, queue_name: str, q_url: str, exc: Exception
    ) -> Payload | None:
        """A refusal standing for ``message`` (a work queue), or None (dropped, no-ack queue)."""
        logger.warning("refusing a message from %s: %s: %s", queue_name, type(exc).__name__, exc)
        if queue_name in self._noack_queues:
            self._delete_message(queue_name, message)
            return None
        refusal: dict[str, Any] = {
            "reason": exc.reason if isinstance(exc, UnacceptableMessage) else "poison",
            "error_type": type(exc).__name__,
            "error_message": str(exc)[:MAX_MESSAGE_CHARS],
        }
        if isinstance(exc, MissingPayload):
            refusal["missing"] = True
            refusal["idempotency"] = _attribute(message, IDEMPOTENCY_ATTRIBUTE)
        return {
            "body": "",
            "content-type": "application/x-taskapp-refusal",
            "content-encoding": "binary",
            "headers": {REFUSAL_HEADER: refusal},
            "properties": {
                "delivery_tag": message["ReceiptHandle"],
                "delivery_info": {
                    "exchange": "",
                    "routing_key": queue_name,
                    "sqs_message": message,
                    "sqs_queue": q_url,
                    "redelivered": receive_count(message) > 1,
                },
            },
        }

    def _hand_back(self, message: SQSMessage, queue_name: str, q_url: str, exc: Exception) -> None:
        """Leave ``message`` to come back after the redelivery backoff (its RedrivePolicy ends
        a failure that never passes)."""
        delay = redelivery_delay(receive_count(message))
        logger.warning(
            "could not read a message from %s, back in %ss: %s: %s",
            queue_name,
            delay,
            type(exc).__name__,
            exc,
        )
        if queue_name in self._noack_queues:
            self._delete_message(queue_name, message)
            return
        try:
            self.sqs(queue=self.canonical_queue_name(queue_name)).change_message_visibility(
                QueueUrl=q_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
        except (BotoCoreError, ClientError, OSError) as again:
            logger.warning("could not back off a message of %s: %r", queue_name, again)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        try:
            info = self.qos.get(delivery_tag).delivery_info
        except KeyError:
            info = {}
        pointer = self._accepted_pointer(info.get("sqs_message") or {})
        super().basic_ack(delivery_tag, multiple)
        if pointer and not info.get("dead_lettered"):
            try:
                self._s3().delete_object(Bucket=pointer[0], Key=pointer[1])
            except (BotoCoreError, ClientError, OSError) as exc:
                # The message is gone, so nothing reads the object again: an S3 outage only
                # leaves an orphan for the bucket's cleanup, it must not fail the ack.
                logger.warning("could not delete claim-check object %s: %r", pointer[1], exc)

    @property
    def delay_hop(self) -> int:
        return int(self.transport_options.get("delay_hop", MAX_DELAY_SECONDS))

    def _put(self, queue: str, message: Payload, **kwargs: Any) -> None:
        if not message.get("redelivered"):
            super()._put(queue, message, **kwargs)
            return
        # kombu "restores" an unacked message (channel closed at a warm shutdown, a requeue) by
        # hiding it for wait_time_seconds (20 s); hand it back now so another worker starts it.
        # SQS still holds the message: a hand-back that keeps failing is retried briefly, then
        # left to the visibility timeout. Raising would make kombu print "UNABLE TO RESTORE"
        # and dump the message to a file, as if SQS had lost it.
        handle = message["properties"]["delivery_tag"]
        for attempt in range(RESTORE_ATTEMPTS):
            try:
                self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
                    QueueUrl=self._new_queue(queue), ReceiptHandle=handle, VisibilityTimeout=0
                )
                return
            except (BotoCoreError, ClientError, OSError) as exc:
                error = exc
                if attempt + 1 < RESTORE_ATTEMPTS:
                    logger.info("hand-back to %s failed (%r), retrying", queue, exc)
                    time.sleep(RESTORE_BACKOFF * 2**attempt)
        logger.warning(
            "could not hand back a message of %s (%r); SQS makes it visible again after its "
            "visibility timeout",
            queue,
            error,
        )

    def _hop(self, queue_url: str, qname: str, message: SQSMessage) -> bool:
        """Re-publish ``message`` for its next hop if its ETA is still ahead; True if it was."""
        if qname.endswith(FIFO_SUFFIX):
            return False
        try:
            pointer = pointer_of(message)
            if pointer is not None:  # the body is in S3; the pointer carries its ETA
                headers = {"eta": _attribute(message, ETA_ATTRIBUTE), "id": pointer[1]}
            else:
                text = bytes_to_str(self._decode_python_message_body(message["Body"]))
                headers = self._prepare_json_payload(text).get("headers") or {}
            remaining = remaining_seconds(headers.get("eta"))
        except Exception:  # noqa: BLE001 - malformed: _message_to_python refuses it
            return False
        if remaining <= DUE_SLACK:
            return False
        client = self.sqs(queue=self.canonical_queue_name(qname))
        extra = {}
        if message.get("MessageAttributes"):
            extra["MessageAttributes"] = message["MessageAttributes"]
        try:
            client.send_message(
                QueueUrl=queue_url,
                MessageBody=message["Body"],
                DelaySeconds=delay_for(remaining, self.delay_hop),
                **extra,
            )
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (BotoCoreError, ClientError, OSError) as exc:
            # Still not due: leave it to come back after its visibility timeout, hop then.
            logger.warning("could not hop a message on %s: %r", qname, exc)
            return True
        logger.debug("hopped task %s on %s: %.0fs to go", headers.get("id"), qname, remaining)
        return True

    def _envelope_payload(
        self, payload: Payload, raw_text: str, message: SQSMessage, q_url: str
    ) -> Payload:
        payload = super()._envelope_payload(payload, raw_text, message, q_url)
        payload["properties"]["delivery_info"]["redelivered"] = receive_count(message) > 1
        return payload

    def _delete_rejected_message(self, delivery_tag: str) -> None:
        try:
            info = self.qos.get(delivery_tag).delivery_info
            sqs_message, queue_url = info["sqs_message"], info["sqs_queue"]
        except KeyError:
            return
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        if not self._has_redrive_policy(queue, queue_url):
            super()._delete_rejected_message(delivery_tag)
            return
        delay = redelivery_delay(receive_count(sqs_message))
        try:
            self.sqs(queue=queue).change_message_visibility(
                QueueUrl=queue_url,
                ReceiptHandle=sqs_message["ReceiptHandle"],
                VisibilityTimeout=delay,
            )
        except (BotoCoreError, ClientError, OSError) as exc:
            # The message still comes back after its visibility timeout; only slower.
            logger.warning("could not back off rejected message on %s: %s", queue_url, exc)


def _attribute(message: SQSMessage, name: str) -> str | None:
    attribute = (message.get("MessageAttributes") or {}).get(name)
    value = attribute.get("StringValue") if isinstance(attribute, dict) else None
    return value if isinstance(value, str) else None
