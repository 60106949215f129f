"""Bulk enqueue: ``enqueue_many(signatures)`` sends up to 10 task messages per SendMessageBatch.

Celery publishes one SendMessage per task; SQS bills per request and takes 10 messages per
call. Each signature still goes through ``apply_async`` (idempotency keys, routing by
``taskapp.queues.route_task``, ``before_task_publish`` and so the native SQS delay of
``taskapp/sqs/delay.py``), but on a channel stand-in that keeps the prepared message instead of
sending it; the channel's own ``_put`` then turns it into SendMessage parameters (caught by a
botocore hook before any HTTP call), so the messages are byte for byte what ``apply_async`` would
have sent (except the random ``delivery_tag``). Bodies over the claim-check threshold go to S3
first, by the channel's own claim-check handler (``taskapp/sqs/claimcheck.py``).

The connection (yours, if you pass one; else one from the app's pool) must not publish from
another thread meanwhile: the hooks sit on its SQS client while the messages are prepared.

Batches hold at most 10 entries and 1 MiB (SQS's limits), per queue. Nothing is dropped when a
batch partly fails: an entry SQS refuses as invalid (``SenderFault``), or every entry of a call
SQS refuses as a whole, is sent again on its own with SendMessage; an entry that failed on the
SQS side is retried in the next batch (3 rounds, with backoff) and then on its own. Whatever
still fails is reported, per signature, as an :class:`EnqueueError` in the returned list.

Caveats: ``after_task_publish`` fires when a message is prepared, before it is sent. The
``task-sent`` events of a batch go out only for the delivered messages, as one event message
per batch. On a FIFO queue, an entry retried on its own can land after later entries of the
same message group.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ClientError
from celery import current_app
from kombu.exceptions import EncodeError

from taskapp.sqs.claimcheck import message_size, pointer_of
from taskapp.sqs.plumbing import BATCH, MAX_MESSAGE_BYTES

__all__ = ["enqueue_many", "EnqueueError"]

logger = logging.getLogger(__name__)

#: Batch rounds for entries that failed on the SQS side, before each is sent on its own.
ROUNDS = 3
RETRY_DELAY = 0.1


class EnqueueError(Exception):
    """A signature ``enqueue_many`` could not enqueue, and why."""

    def __init__(self, index: int, code: str, message: str, sender_fault: bool = True) -> None:
        super().__init__(f"signature {index} not enqueued: {code}: {message}")
        self.index, self.code, self.message, self.sender_fault = index, code, message, sender_fault


@dataclass
class _Entry:
    """One prepared task message on its way to SQS."""

    index: int  # position of its signature
    queue: str  # SQS queue name
    url: str
    params: dict[str, Any]  # SendMessage parameters without QueueUrl
    sent: bool = False
    error: EnqueueError | None = None

    @property
    def size(self) -> int:
        return message_size(self.params["MessageBody"], self.params.get("MessageAttributes"))

    def fail(self, code: str, message: str, sender_fault: bool) -> None:
        self.error = EnqueueError(self.index, code, message, sender_fault)


@dataclass
class _Outbox:
    """Stands in for a kombu channel: keeps published messages instead of sending them."""

    channel: Any
    index: int = 0
    tasks: list[tuple[int, dict[str, Any], str, str]] = field(default_factory=list)
    events: list[tuple[int, dict[str, Any], str, str]] = field(default_factory=list)

    def basic_publish(
        self, message: dict[str, Any], exchange: str, routing_key: str, **_: Any
    ) -> None:
        kept = (self.index, message, exchange, routing_key)
        # Task messages use the anonymous exchange (routing key = queue); events go to celeryev.
        (self.tasks if not exchange else self.events).append(kept)

    def drop(self, index: int) -> None:
        self.tasks = [t for t in self.tasks if t[0] != index]
        self.events = [e for e in self.events if e[0] != index]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.channel, name)


class _Capture:
    """botocore hooks on one SQS client that keep each SendMessage's final parameters and skip
    its HTTP call (botocore Stubber's mechanism: a ``before-call`` handler that answers)."""

    def __init__(self, client: Any) -> None:
        self.events = client.meta.events
        self.params: dict[str, Any] = {}
        # Last, so it sees the parameters after the claim-check offloader has run.
        self.events.register_last("before-parameter-build.sqs.SendMessage", self.keep)
        self.events.register_first("before-call.sqs.SendMessage", self.skip)

    def keep(self, params: dict[str, Any], **_: Any) -> None:
        self.params = dict(params)

    def skip(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("", 200, {}, None), {"MessageId": ""}

    def close(self) -> None:
        self.events.unregister("before-parameter-build.sqs.SendMessage", self.keep)
        self.events.unregister("before-call.sqs.SendMessage", self.skip)


class _Prepared:
    """SendMessage parameters the channel's own ``_put`` produces, nothing sent."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.captures: dict[int, _Capture] = {}

    def __enter__(self) -> _Prepared:
        return self

    def __exit__(self, *_: Any) -> None:
        for capture in self.captures.values():
            capture.close()

    def entry(self, index: int, message: dict[str, Any], queue: str) -> _Entry:
        channel = self.channel
        name = channel.canonical_queue_name(queue)
        client = channel.sqs(queue=name)  # per queue when predefined queues assume a role
        capture = self.captures.get(id(client))
        if capture is None:
            capture = self.captures[id(client)] = _Capture(client)
        channel._inplace_augment_message(message, "", queue)
        channel._put(queue, message)
        params = dict(capture.params)
        return _Entry(index, name, params.pop("QueueUrl"), params)


def enqueue_many(signatures: Iterable[Any], app: Any = None, connection: Any = None) -> list[Any]:
    """Enqueue ``signatures`` with SendMessageBatch; return, in order, each one's
    ``AsyncResult`` or the :class:`EnqueueError` that kept it out of SQS.

    ``app`` defaults to the first signature's (its task's app, else Celery's current app): this
    layer never imports the application, which is built on top of it."""
    signatures = list(signatures)
    if app is None:
        app = signatures[0].app if signatures else current_app
    outcomes: list[Any] = [None] * len(signatures)
    if connection is None:
        # A pooled connection keeps its channel and boto3 clients from one call to the next.
        with app.pool.acquire(block=True) as conn:
            _enqueue(app, conn, signatures, outcomes)
    else:
        _enqueue(app, connection, signatures, outcomes)
    return outcomes


def _enqueue(app: Any, connection: Any, signatures: list[Any], outcomes: list[Any]) -> None:
    channel = connection.default_channel
    outbox = _Outbox(channel)
    producer = app.amqp.Producer(outbox, auto_declare=False)
    for index, signature in enumerate(signatures):
        outbox.index = index
        try:
            outcomes[index] = signature.apply_async(producer=producer)
        except (EncodeError, TypeError, ValueError) as exc:
            outbox.drop(index)
            outcomes[index] = EnqueueError(index, type(exc).__name__, str(exc))
    with _Prepared(channel) as prepared:
        entries = [prepared.entry(index, message, rk) for index, message, _, rk in outbox.tasks]
    by_url: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_url.setdefault(entry.url, []).append(entry)
    for url, queued in by_url.items():
        _send(channel.sqs(queue=queued[0].queue), url, queued)
    for entry in entries:
        if not entry.sent:
            _forget_payload(channel, entry)
            if not isinstance(outcomes[entry.index], EnqueueError):
                outcomes[entry.index] = entry.error
                logger.warning("enqueue failed: %s", entry.error)
    failed = {i for i, outcome in enumerate(outcomes) if isinstance(outcome, EnqueueError)}
    _publish_events(channel, [e for e in outbox.events if e[0] not in failed])


def _chunks(entries: list[_Entry]) -> Iterator[list[_Entry]]:
    chunk: list[_Entry] = []
    size = 0
    for entry in entries:
        if chunk and (len(chunk) == BATCH or size + entry.size > MAX_MESSAGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


def _send(client: Any, url: str, entries: list[_Entry]) -> None:
    """Send ``entries`` to ``url``, batch by batch; mark each sent or failed."""
    pending = entries
    for round_ in range(ROUNDS):
        if not pending:
            return
        if round_:
            time.sleep(RETRY_DELAY * 2 ** (round_ - 1))
        again: list[_Entry] = []
        alone: list[_Entry] = []
        for chunk in _chunks(pending):
            batch = [{"Id": str(i), **e.params} for i, e in enumerate(chunk)]
            try:
                resp = client.send_message_batch(QueueUrl=url, Entries=batch)
            except ClientError as exc:
                # The call as a whole was refused (one entry can spoil it): each on its own.
                error = exc.response.get("Error", {})
                for e in chunk:
                    e.fail(error.get("Code", "ClientError"), error.get("Message", ""), True)
                alone += chunk
                continue
            except (BotoCoreError, OSError) as exc:
                for e in chunk:
                    e.fail(type(exc).__name__, str(exc), False)
                again += chunk
                continue
            for ok in resp.get("Successful", []):
                e = chunk[int(ok["Id"])]
                e.sent, e.error = True, None
            for failure in resp.get("Failed", []):
                e = chunk[int(failure["Id"])]
                sender = bool(failure.get("SenderFault"))
                e.fail(failure.get("Code", ""), failure.get("Message", ""), sender)
                (alone if sender else again).append(e)
        for e in alone:
            _send_one(client, url, e)
        pending = again
    for e in pending:
        _send_one(client, url, e)


def _send_one(client: Any, url: str, entry: _Entry) -> None:
    try:
        client.send_message(QueueUrl=url, **entry.params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        entry.fail(error.get("Code", "ClientError"), error.get("Message", ""), True)
    except (BotoCoreError, OSError) as exc:
        entry.fail(type(exc).__name__, str(exc), False)
    else:
        entry.sent, entry.error = True, None


def _forget_payload(channel: Any, entry: _Entry) -> None:
    """Delete the S3 object of a claim-checked message that never reached SQS."""
    pointer = pointer_of({"Body": entry.params["MessageBody"]})
    if pointer is None:
        return
    try:
        channel._s3().delete_object(Bucket=pointer[0], Key=pointer[1])
    except (ClientError, BotoCoreError) as exc:
        logger.warning("could not delete unsent claim-check object %s: %r", pointer[1], exc)


def _publish_events(channel: Any, events: list[tuple[int, dict[str, Any], str, str]]) -> None:
    """Publish the delivered messages' ``task-sent`` events, one event message per batch."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, message, exchange, routing_key in events:
        groups.setdefault((exchange, routing_key), []).append(message)
    for (exchange, routing_key), messages in groups.items():
        for start in range(0, len(messages), BATCH):
            chunk = messages[start : start + BATCH]
            first = chunk[0]
            if len(chunk) > 1 and all(m.get("content-type") == "application/json" for m in chunk):
                # Celery's event receivers (Flower, celery events) accept a list of events.
                first["body"] = json.dumps([json.loads(m["body"]) for m in chunk])
                chunk = [first]
            for message in chunk:
                try:
                    channel.basic_publish(message, exchange, routing_key)
                except (ClientError, BotoCoreError) as exc:
                    # Monitoring misses a "sent" event; the tasks themselves are in SQS.
                    logger.warning("could not publish task-sent events: %r", exc)
