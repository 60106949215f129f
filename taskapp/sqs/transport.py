"""kombu's SQS transport with the fixes taskapp relies on.

Selected with ``broker_transport = "taskapp.sqs.transport:Transport"`` (see ``config/celery.py``);
the broker URL stays ``sqs://`` so boto3's endpoint and credential chain apply unchanged.

What it changes, and why:

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
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from kombu.log import get_logger
from kombu.transport import SQS
from kombu.utils.encoding import bytes_to_str

from taskapp.queues import FIFO_SUFFIX
from taskapp.sqs.batching import AckBatchMixin
from taskapp.sqs.claimcheck import offloader, pointer_of
from taskapp.sqs.delay import DUE_SLACK, MAX_DELAY_SECONDS, delay_for, remaining_seconds

__all__ = ["Channel", "Transport", "receive_count", "redelivery_delay"]

logger = get_logger(__name__)

#: Cap of the visibility backoff applied to a rejected message, in seconds.
MAX_REDELIVERY_DELAY = 60


def receive_count(sqs_message: dict[str, Any]) -> int:
    """How many times SQS has handed out this message (1 on first delivery)."""
    attributes = sqs_message.get("Attributes") or {}
    try:
        return int(attributes.get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def redelivery_delay(receives: int) -> int:
    """Seconds until a rejected message is visible again: 1, 2, 4, ... capped."""
    return min(2 ** max(receives - 1, 0), MAX_REDELIVERY_DELAY)


class Channel(AckBatchMixin, SQS.Channel):
    """SQS channel that flags redeliveries, hops long delays and backs off rejected messages."""

    def _new_boto_client(self, service, *args, **kwargs):  # type: ignore[no-untyped-def]
        client = super()._new_boto_client(service, *args, **kwargs)
        threshold = self.transport_options.get("claim_check_threshold")
        if service == "sqs" and threshold:
            handler = offloader(self._s3, self.transport_options["claim_check_bucket"], threshold)
            client.meta.events.register("before-parameter-build.sqs.SendMessage", handler)
        return client

    def _s3(self) -> Any:
        from taskapp.aws import client

        return client("s3")

    def _message_to_python(self, message, queue_name, q_url):  # type: ignore[no-untyped-def]
        pointer = pointer_of(message)
        if pointer is None:
            return super()._message_to_python(message, queue_name, q_url)
        bucket, key = pointer
        body = self._s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        payload = super()._message_to_python({**message, "Body": body}, queue_name, q_url)
        # Keep the pointer as "the received message": a dead letter copies the pointer, not
        # the payload, and the ack knows which object to delete.
        payload["properties"]["delivery_info"]["sqs_message"] = message
        return payload

    def basic_ack(self, delivery_tag, multiple=False):  # type: ignore[no-untyped-def]
        try:
            info = self.qos.get(delivery_tag).delivery_info
        except KeyError:
            info = {}
        pointer = pointer_of(info.get("sqs_message") or {})
        super().basic_ack(delivery_tag, multiple)
        if pointer and not info.get("dead_lettered"):
            self._s3().delete_object(Bucket=pointer[0], Key=pointer[1])

    @property
    def delay_hop(self) -> int:
        return int(self.transport_options.get("delay_hop", MAX_DELAY_SECONDS))

    def _put(self, queue, message, **kwargs):  # type: ignore[no-untyped-def]
        if not message.get("redelivered"):
            return super()._put(queue, message, **kwargs)
        # kombu "restores" an unacked message (channel closed at a warm shutdown, a requeue) by
        # hiding it for wait_time_seconds (20 s); hand it back now so another worker starts it.
        self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
            QueueUrl=self._new_queue(queue),
            ReceiptHandle=message["properties"]["delivery_tag"],
            VisibilityTimeout=0,
        )
        return None

    def _on_messages_ready(self, queue, qname, messages):  # type: ignore[no-untyped-def]
        if messages.get("Messages"):
            messages["Messages"] = [
                m for m in messages["Messages"] if not self._hop(queue, qname, m)
            ]
        return super()._on_messages_ready(queue, qname, messages)

    def _hop(self, queue_url: str, qname: str, message: dict[str, Any]) -> bool:
        """Re-publish ``message`` for its next hop if its ETA is still ahead; True if it was."""
        if qname.endswith(FIFO_SUFFIX):
            return False
        text = bytes_to_str(self._decode_python_message_body(message["Body"]))
        headers = self._prepare_json_payload(text).get("headers") or {}
        remaining = remaining_seconds(headers.get("eta"))
        if remaining <= DUE_SLACK:
            return False
        client = self.sqs(queue=self.canonical_queue_name(qname))
        extra = {}
        if message.get("MessageAttributes"):
            extra["MessageAttributes"] = message["MessageAttributes"]
        client.send_message(
            QueueUrl=queue_url,
            MessageBody=message["Body"],
            DelaySeconds=delay_for(remaining, self.delay_hop),
            **extra,
        )
        client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        logger.debug("hopped task %s on %s: %.0fs to go", headers.get("id"), qname, remaining)
        return True

    def _envelope_payload(self, payload, raw_text, message, q_url):  # type: ignore[no-untyped-def]
        payload = super()._envelope_payload(payload, raw_text, message, q_url)
        payload["properties"]["delivery_info"]["redelivered"] = receive_count(message) > 1
        return payload

    def _delete_rejected_message(self, delivery_tag):  # type: ignore[no-untyped-def]
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
        except ClientError as exc:
            # The message still comes back after its visibility timeout; only slower.
            logger.warning("could not back off rejected message on %s: %s", queue_url, exc)


class Transport(SQS.Transport):
    """kombu's SQS transport using :class:`Channel`."""

    Channel = Channel
