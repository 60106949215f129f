"""``taskapp.enqueue_many``: SendMessageBatch, same messages as ``apply_async``, nothing dropped."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from celery.result import AsyncResult

from config.settings import Settings
from taskapp import enqueue_many
from taskapp.aws.sqs import MAX_MESSAGE_BYTES as BATCH_BYTES
from taskapp.sqs.enqueue import EnqueueError, _Entry, _send
from tests.support.queues import drain, prefixed_app, queue_url
from tests.support.waiting import result_or_whereabouts
from tests.tasks import add, digest


class Sent:
    """Every SendMessage / SendMessageBatch request one client puts on the wire."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        self.calls.append((event_name.rsplit(".", 1)[-1], json.loads(request.body)))

    def of(self, action: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == action]


@pytest.fixture
def connection(app: Any, provisioned: list[Any]) -> Iterator[tuple[Any, Sent]]:
    """A producer connection whose SQS sends are recorded."""
    with app.connection_for_write() as conn:
        client = conn.default_channel.sqs()
        sent = Sent()
        events = [f"before-send.sqs.{a}" for a in ("SendMessage", "SendMessageBatch")]
        for event in events:
            client.meta.events.register(event, sent)
        yield conn, sent
        for event in events:
            client.meta.events.unregister(event, sent)


@pytest.mark.integration
def test_25_tasks_go_in_3_batches_and_all_run(worker: Any, connection: Any) -> None:
    conn, sent = connection
    # given 25 signatures
    signatures = [add.s(i, 1000) for i in range(25)]
    # when they are enqueued together
    outcomes = enqueue_many(signatures, connection=conn)
    # then they took three SendMessageBatch calls (10 + 10 + 5) and no single sends
    assert [len(p["Entries"]) for p in sent.of("SendMessageBatch")] == [10, 10, 5]
    assert sent.of("SendMessage") == []
    # and the worker ran every one of them
    assert all(isinstance(o, AsyncResult) for o in outcomes)
    assert [result_or_whereabouts(o, timeout=30, interval=0.05) for o in outcomes] == [
        i + 1000 for i in range(25)
    ]


def _envelope(body: str) -> dict[str, Any]:
    """kombu's SQS envelope of a task message (base64-encoded JSON by default)."""
    return json.loads(body if body.startswith("{") else base64.b64decode(body))


def _decoded(message: dict[str, Any]) -> dict[str, Any]:
    envelope = _envelope(message["Body"])
    envelope["properties"].pop("delivery_tag")  # random per message
    envelope["properties"].pop("expiration")  # milliseconds from "now" to ``expires``
    envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
    return {
        "envelope": envelope,
        "attributes": message.get("MessageAttributes"),
    }


def _clock_stopped_at(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    """Make the producer's native delay (taskapp/sqs/delay.py) read ``now`` as the time."""
    from taskapp.sqs import delay

    class Stopped(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Stopped:  # type: ignore[override]
            return cls.fromtimestamp(now.timestamp(), tz)

    monkeypatch.setattr(delay, "datetime", Stopped)


def test_batched_message_equals_the_apply_async_message(
    app: Any, sqs: Any, settings: Settings, provisioned: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a producer on queues no worker reads, and one call with routing, ETA and options
    prefix = f"{settings.queue_prefix}same{uuid.uuid4().hex[:6]}-"
    probe = prefixed_app(app, prefix)
    eta = datetime.now(UTC) + timedelta(seconds=2)
    # DelaySeconds counts from the time of sending: on a loaded machine the two sends can fall
    # on either side of a whole second (2 vs 1) or of the ETA itself (2 vs none). Both sends
    # see the same time here, so the messages must be equal, DelaySeconds included.
    _clock_stopped_at(monkeypatch, eta - timedelta(seconds=2))
    options = {
        "task_id": str(uuid.uuid4()),
        "priority": "high",
        "eta": eta,
        "expires": eta + timedelta(hours=1),
        "headers": {"idempotency_key": "order-42"},
    }
    signature = probe.signature("email.send", args=(["a@example.com"],), options=options)
    # when it is sent once by apply_async and once by enqueue_many
    signature.apply_async()
    (outcome,) = enqueue_many([signature], app=probe)
    # then the lane queue holds two messages that differ only in their delivery tag (and the
    # milliseconds to expiry kombu derives from the time of sending)
    assert isinstance(outcome, AsyncResult)
    assert outcome.id == options["task_id"]
    url = sqs.get_queue_url(QueueName=f"{prefix}email-high")["QueueUrl"]
    messages = drain(sqs, url, wait=6, expect=2)
    assert len(messages) == 2
    first, second = (_decoded(m) for m in messages)
    assert first == second
    assert first["envelope"]["properties"]["DelaySeconds"] == 2
    assert first["envelope"]["headers"]["eta"] == eta.isoformat()
    assert first["envelope"]["properties"]["delivery_info"]["routing_key"] == "email-high"
    sqs.delete_queue(QueueUrl=url)


def test_a_refused_entry_is_reported_and_the_rest_delivered(
    app: Any, sqs: Any, settings: Settings, provisioned: list[Any], connection: Any
) -> None:
    conn, sent = connection
    # given a queue that refuses messages over 8 KiB, and ten signatures for it, one too big
    name = f"small-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(
        QueueName=settings.queue_prefix + name, Attributes={"MaximumMessageSize": "8192"}
    )
    signatures = [add.s(i, 0).set(queue=name) for i in range(10)]
    signatures[4] = add.s("x" * 10_000, "").set(queue=name)
    # when they are enqueued together
    outcomes = enqueue_many(signatures, connection=conn)
    # then the big one is reported, with SQS's reason, and the other nine are in the queue
    error = outcomes[4]
    assert isinstance(error, EnqueueError)
    assert error.index == 4
    assert error.sender_fault
    assert error.code == "InvalidParameterValue"
    delivered = [o for i, o in enumerate(outcomes) if i != 4]
    assert all(isinstance(o, AsyncResult) for o in delivered)
    messages = drain(sqs, queue_url(sqs, settings, name), wait=1)
    ids = {_envelope(m["Body"])["headers"]["id"] for m in messages}
    assert ids == {o.id for o in delivered}
    # and after the refused batch each entry was tried on its own
    assert len(sent.of("SendMessageBatch")) == 1
    assert len(sent.of("SendMessage")) == 10
    sqs.delete_queue(QueueUrl=queue_url(sqs, settings, name))


@pytest.mark.integration
def test_big_bodies_are_claim_checked_and_batches_stay_under_1_mib(
    worker: Any, connection: Any
) -> None:
    conn, sent = connection
    # given three 350 KB payloads (about 620 KB each once kombu has base64-encoded them twice,
    # so two do not fit one batch) and a 2 MiB one (too big for any message)
    payloads = ["a" * 350_000, "b" * 350_000, "c" * (2 * 1024 * 1024), "d" * 350_000]
    # when they are enqueued together
    outcomes = enqueue_many([digest.s(p) for p in payloads], connection=conn)
    # then every batch is within SQS's 1 MiB, and the worker saw each payload whole
    for params in sent.of("SendMessageBatch"):
        assert sum(len(e["MessageBody"]) for e in params["Entries"]) <= BATCH_BYTES
    assert len(sent.of("SendMessageBatch")) >= 2
    for payload, outcome in zip(payloads, outcomes, strict=True):
        assert result_or_whereabouts(outcome, timeout=60, interval=0.1) == {
            "length": len(payload),
            "sha256": hashlib.sha256(payload.encode()).hexdigest(),
        }


class ScriptedSQS:
    """A stand-in client for the batch protocol only: fails chosen entries on chosen calls."""

    def __init__(self, batch_failures: list[dict[str, bool]], refuse_alone: set[str]) -> None:
        self.batch_failures = batch_failures  # per call: body -> SenderFault
        self.refuse_alone = refuse_alone
        self.delivered: list[str] = []
        self.calls: list[tuple[str, list[str]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        failures = self.batch_failures.pop(0) if self.batch_failures else {}
        self.calls.append(("batch", [e["MessageBody"] for e in Entries]))
        ok, failed = [], []
        for e in Entries:
            if e["MessageBody"] in failures:
                sender = failures[e["MessageBody"]]
                failed.append({"Id": e["Id"], "SenderFault": sender, "Code": "X", "Message": ""})
            else:
                self.delivered.append(e["MessageBody"])
                ok.append({"Id": e["Id"]})
        return {"Successful": ok, "Failed": failed}

    def send_message(self, QueueUrl: str, MessageBody: str, **_: Any) -> None:
        self.calls.append(("one", [MessageBody]))
        if MessageBody in self.refuse_alone:
            raise ClientError({"Error": {"Code": "InvalidMessageContents"}}, "SendMessage")
        self.delivered.append(MessageBody)


def test_failed_entries_are_retried_individually_and_nothing_is_dropped() -> None:
    # given 12 entries; SQS fails "m3" on its side once, and refuses "m7" as invalid
    entries = [_Entry(i, "q", "url", {"MessageBody": f"m{i}"}) for i in range(12)]
    sqs = ScriptedSQS([{"m3": False, "m7": True}], refuse_alone={"m7"})
    # when they are sent
    _send(sqs, "url", entries)
    # then m3 went again in the next batch, m7 was tried once on its own and is reported
    assert sqs.calls[2:] == [("one", ["m7"]), ("batch", ["m3"])]
    assert sorted(sqs.delivered) == sorted(f"m{i}" for i in range(12) if i != 7)
    assert [e.index for e in entries if not e.sent] == [7]
    assert entries[7].error is not None
    assert entries[7].error.code == "InvalidMessageContents"
    assert all(e.error is None for e in entries if e.sent)
