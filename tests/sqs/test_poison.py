"""No message can stop the worker while it becomes a task request; pointers are not trusted.

Each hostile message is sent with raw boto3, as anyone allowed to SendMessage could. Before
the fix each of these made Celery log "Unrecoverable error" and the worker exit.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from celery.events.receiver import EventReceiver
from celery.worker import state as worker_state
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config.settings import Settings
from taskapp.local.net import free_port
from taskapp.sqs.claimcheck import IDEMPOTENCY_ATTRIBUTE, SIZE_ATTRIBUTE, pointer_of
from taskapp.sqs.deadletter import UnacceptableMessage, read_reason
from taskapp.sqs.delivery import REFUSAL_HEADER, refusal_of
from tests.sqs.hostile import (
    JPEG,
    claim_check_key,
    dead_letters_for,
    pointer_body,
    queue_is_empty,
    sqs_body,
    task_envelope,
)
from tests.support.queues import drain, queue_url
from tests.support.waiting import result_or_whereabouts, wait_for
from tests.tasks import effect_times, record

pytestmark = pytest.mark.integration


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


@pytest.fixture
def strategies(worker: Any) -> Iterator[dict[str, Any]]:
    """The session worker's task strategies (what Celery calls per message); extras removed."""
    live = worker.consumer.strategies
    before = set(live)
    yield live
    for name in set(live) - before:
        del live[name]


def _raising(exc: Exception) -> Any:
    def strategy(*_: Any, **__: Any) -> None:
        raise exc

    return strategy


def test_unreadable_messages_are_dead_lettered_with_the_error_and_the_worker_goes_on(
    worker: Any,
    app: Any,
    sqs: Any,
    s3: Any,
    settings: Settings,
    strategies: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = queue_url(sqs, settings, "default")
    tag = uuid.uuid4().hex
    bucket = settings.bucket
    # given objects a pointer could name: a JPEG, and one over the read cap (1 KiB here)
    # (the worker's transport option, from TASKAPP_CLAIM_CHECK_MAX_BYTES at configuration)
    options = worker.consumer.connection.transport_options
    monkeypatch.setitem(options, "claim_check_max_bytes", 1024)
    jpeg_key, big_key = claim_check_key(".jpg"), claim_check_key()
    s3.put_object(Bucket=bucket, Key=jpeg_key, Body=JPEG)
    big = sqs_body(task_envelope(app, args=[f"{tag}-big"], kwargs={"pad": "x" * 2048}))
    s3.put_object(Bucket=bucket, Key=big_key, Body=big.encode())
    # and strategies that refuse (as the signature check does) or crash
    strategies["tests.refused"] = _raising(UnacceptableMessage("forged", reason="signature"))
    strategies["tests.crashing"] = _raising(RuntimeError("strategy bug"))
    # and a task whose time limit is not a pair (taskapp/sqs/shape.py refuses it by name)
    no_pair = task_envelope(app, args=[tag], headers={"timelimit": "abc"})
    forged = {REFUSAL_HEADER: {"reason": "permanent", "missing": True, "idempotency": "{}"}}
    # when each hostile message is sent: body -> (reason, error type) expected in the DLQ
    expected = {
        pointer_body(bucket, claim_check_key()): ("poison", "MissingPayload"),
        pointer_body(bucket, jpeg_key): ("poison", "UnicodeDecodeError"),
        pointer_body(bucket, big_key): ("poison", "PayloadTooLarge"),
        sqs_body(task_envelope(app, args=[tag], body=[1, 2])): ("poison", "UnacceptableMessage"),
        sqs_body(task_envelope(app, args=[tag], body={"a": 1})): ("poison", "UnacceptableMessage"),
        sqs_body(task_envelope(app, headers={"task": ["tests.record"]})): (
            "poison",
            "UnacceptableMessage",
        ),
        sqs_body(no_pair): ("poison", "UnacceptableMessage"),
        sqs_body(task_envelope(app, args=[tag], headers=forged)): (
            "poison",
            "UnacceptableMessage",
        ),
        sqs_body({"body": "", "properties": [1]}): ("poison", "AttributeError"),
        sqs_body({**task_envelope(app, args=[tag]), "body": "%%% not base64"}): (
            "poison",
            "Error",  # binascii.Error
        ),
        json.dumps({"__type__": "datetime", "__value__": "not a date"}): ("poison", "ValueError"),
        "[" * 50_000: ("poison", "RecursionError"),
        sqs_body(task_envelope(app, name="tests.refused")): ("signature", "UnacceptableMessage"),
        sqs_body(task_envelope(app, name="tests.crashing")): ("poison", "RuntimeError"),
    }
    good = [record.delay(tag) for _ in range(5)]
    for body in expected:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    control = sqs_body(task_envelope(app, args=[f"{tag}-raw"]))  # the same builder, unbroken
    sqs.send_message(QueueUrl=url, MessageBody=control)
    good += [record.delay(tag) for _ in range(5)]
    # then the good tasks all ran, the unbroken raw message too
    assert sorted(result_or_whereabouts(r, timeout=60, interval=0.1) for r in good) == list(
        range(1, 11)
    )
    wait_for(
        lambda: effect_times(f"{tag}-raw"),
        "the unbroken raw message to run",
        timeout=30,
        interval=0.2,
    )
    # and every hostile one is in the DLQ once, with its reason and error
    letters = dead_letters_for(sqs, queue_url(sqs, settings, "default-dlq"), set(expected))
    got = {}
    for body, found in letters.items():
        reason = read_reason(found[0]["MessageAttributes"])
        assert reason is not None, body[:80]
        assert reason.error_message, body[:80]
        assert reason.source_queue == "default"
        assert reason.attempts >= 1
        got[body] = (reason.reason, reason.error_type)
        assert len(found) == 1, f"{body[:80]} was dead-lettered {len(found)} times"
    assert got == expected
    # and none of them is left to come back
    wait_for(
        lambda: queue_is_empty(sqs, url), "the source queue to be empty", timeout=30, interval=0.2
    )
    # and the oversized payload never ran; dead-lettered claim checks keep their object
    assert effect_times(f"{tag}-big") == []
    assert _exists(s3, bucket, jpeg_key)
    assert _exists(s3, bucket, big_key)
    # and no request of a dead-lettered message is left reserved (heartbeats would renew it)
    assert no_pair["headers"]["id"] not in {r.id for r in worker_state.reserved_requests}
    # and the worker still runs tasks
    assert result_or_whereabouts(app.send_task("taskapp.ping"), timeout=20, interval=0.1) == "pong"


def test_a_pointer_outside_the_claim_check_prefix_or_bucket_is_neither_run_nor_deleted(
    worker: Any, app: Any, sqs: Any, s3: Any, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    bucket, other_bucket = settings.bucket, f"{settings.bucket}-other"
    # given a valid task body stored under a report's key, and in another bucket
    valid = sqs_body(task_envelope(app, args=[tag])).encode()
    foreign_key, other_key = f"reports/finance/{tag}-2026-q3.csv", claim_check_key()
    s3.create_bucket(Bucket=other_bucket)
    s3.put_object(Bucket=bucket, Key=foreign_key, Body=valid)
    s3.put_object(Bucket=other_bucket, Key=other_key, Body=valid)
    # when pointers to them (and to a path that climbs out of the prefix) are sent
    bodies = {
        pointer_body(bucket, foreign_key),
        pointer_body(other_bucket, other_key),
        pointer_body(bucket, f"claim-check/../reports/finance/{tag}-2026-q3.csv"),
    }
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url(sqs, settings, "default"), MessageBody=body)
    # then each is a poison dead letter, nothing ran, and both objects are still there
    letters = dead_letters_for(sqs, queue_url(sqs, settings, "default-dlq"), bodies)
    reasons = [read_reason(found[0]["MessageAttributes"]) for found in letters.values()]
    assert len(letters) == 3
    assert all(len(found) == 1 for found in letters.values())
    assert {(r.reason, r.error_type) for r in reasons if r} == {("poison", "ForeignPointer")}
    assert effect_times(tag) == []
    assert _exists(s3, bucket, foreign_key)
    assert _exists(s3, other_bucket, other_key)


@pytest.mark.parametrize("identity", ["task id", "header key", "kwargs key"])
def test_duplicate_of_a_completed_claim_checked_message_is_a_no_op(
    worker: Any, app: Any, sqs: Any, s3: Any, settings: Settings, identity: str
) -> None:
    tag = uuid.uuid4().hex
    url = queue_url(sqs, settings, "default")
    kwargs: dict[str, Any] = {"pad": "x" * (settings.claim_check_threshold + 1)}
    options: dict[str, Any] = {}
    if identity == "header key":
        options["idempotency_key"] = f"header-{tag}"
    elif identity == "kwargs key":
        kwargs["idempotency_key"] = f"kwargs-{tag}"
    # given a claim-checked task that completed, and the exact pointer message it was sent as
    sent: dict[str, Any] = {}

    def keep(params: dict[str, Any], **_: Any) -> None:
        sent.update(params)  # registered last: after the offloader, the pointer and attributes

    with app.connection_for_write() as conn:
        conn.default_channel.sqs().meta.events.register_last(
            "before-parameter-build.sqs.SendMessage", keep
        )
        result = record.apply_async((tag,), kwargs, connection=conn, **options)
    bucket, key = pointer_of({"Body": sent["MessageBody"]}) or ("", "")
    assert key
    assert IDEMPOTENCY_ATTRIBUTE in sent["MessageAttributes"]
    assert result_or_whereabouts(result, timeout=60, interval=0.1) == 1
    wait_for(
        lambda: not _exists(s3, bucket, key),
        "the claim-check object to be deleted",
        timeout=30,
        interval=0.2,
    )
    # when SQS delivers the same message again (at-least-once)
    sqs.send_message(
        QueueUrl=url, MessageBody=sent["MessageBody"], MessageAttributes=sent["MessageAttributes"]
    )
    # then the worker takes it off the queue without running it and without a dead letter
    wait_for(
        lambda: queue_is_empty(sqs, url),
        "the duplicate to be acknowledged",
        timeout=30,
        interval=0.2,
    )
    letters = dead_letters_for(
        sqs, queue_url(sqs, settings, "default-dlq"), {sent["MessageBody"]}, timeout=2
    )
    assert letters == {}
    assert len(effect_times(tag)) == 1
    assert result_or_whereabouts(app.send_task("taskapp.ping"), timeout=20, interval=0.1) == "pong"


def test_pointer_to_a_missing_object_of_a_task_that_never_completed_is_dead_lettered(
    worker: Any, sqs: Any, settings: Settings
) -> None:
    # given a pointer whose idempotency attribute names a record that does not exist
    body = pointer_body(settings.bucket, claim_check_key())
    identity = json.dumps({"task": "tests.record", "key": uuid.uuid4().hex})
    sqs.send_message(
        QueueUrl=queue_url(sqs, settings, "default"),
        MessageBody=body,
        MessageAttributes={
            SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "2000000"},
            IDEMPOTENCY_ATTRIBUTE: {"DataType": "String", "StringValue": identity},
        },
    )
    # then it is a dead letter (nothing answers it), its attributes kept for a redrive
    letters = dead_letters_for(sqs, queue_url(sqs, settings, "default-dlq"), {body})
    assert len(letters[body]) == 1
    attributes = letters[body][0]["MessageAttributes"]
    reason = read_reason(attributes)
    assert reason is not None
    assert (reason.reason, reason.error_type) == ("poison", "MissingPayload")
    assert attributes[IDEMPOTENCY_ATTRIBUTE]["StringValue"] == identity


def test_a_no_ack_queue_drops_what_it_cannot_read_and_delivers_the_rest(
    provisioned: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    # given an event receiver's queue (no-ack, as Flower and the worker's mailbox consume)
    with app.connection_for_write() as conn:
        channel = conn.channel()
        channel.hub = None  # consume synchronously, never on the session worker's event loop
        queue = EventReceiver(channel, app=app).queue(channel)
        queue.declare()
        delivered: list[Any] = []
        channel.basic_consume(queue.name, True, delivered.append, "tag")
        url = sqs.get_queue_url(QueueName=channel.canonical_queue_name(queue.name))["QueueUrl"]
        event = json.dumps({"type": "worker-heartbeat"})
        good = channel.prepare_message(event, 0, "application/json", "utf-8", {}, {})
        good["properties"]["delivery_tag"] = "t"
        bad = [pointer_body(settings.bucket, claim_check_key()), "hello", '{"a": 1}']
        for body in [*bad, sqs_body(good)]:
            sqs.send_message(QueueUrl=url, MessageBody=body)
        try:
            # when the channel reads them
            def read_all() -> bool:
                try:
                    channel._get_bulk(queue.name)
                except Exception as exc:  # noqa: BLE001 - Empty, or the defect under test
                    if type(exc).__name__ != "Empty":
                        raise
                return queue_is_empty(sqs, url)

            wait_for(read_all, "the event queue to be read", timeout=30, interval=0.2)
        finally:
            channel.basic_cancel("tag")
            queue.delete()
            channel.close()
    # then only the readable message was delivered, and none is left behind
    assert [json.loads(m.body) for m in delivered] == [{"type": "worker-heartbeat"}]


def test_a_pointer_s3_cannot_answer_now_is_handed_back_not_dead_lettered(
    work_channel: Any, sqs: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a received pointer message (on a queue no worker reads), and S3 unreachable
    name = f"handback{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=settings.queue_prefix + name)["QueueUrl"]
    body = pointer_body(settings.bucket, claim_check_key())
    sqs.send_message(QueueUrl=url, MessageBody=body)
    (received,) = sqs.receive_message(
        QueueUrl=url, VisibilityTimeout=60, MessageSystemAttributeNames=["All"]
    )["Messages"]
    down = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name=settings.region,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    monkeypatch.setattr(work_channel, "_s3", lambda: down)
    # when the transport converts it
    assert work_channel._message_to_python(received, name, url) is None
    # then it is neither delivered nor dead-lettered: it is back after the 1 s backoff, not
    # after its 60 s visibility timeout
    again = drain(sqs, url, wait=20, expect=1)
    sqs.delete_queue(QueueUrl=url)
    assert [m["Body"] for m in again] == [body]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


# -- the conversion itself, on generated input ---------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _broken_envelope(draw: st.DrawFn, app: Any) -> Any:
    """A valid task envelope with one field (top level, header, property or task body) broken."""
    envelope = task_envelope(app, args=["fuzz"])
    where = draw(st.sampled_from(["top", "headers", "properties", "delivery_info", "body"]))
    value = draw(_json)
    if where == "body":
        envelope["body"] = draw(
            st.sampled_from([json.dumps(value), "%%%", ""]).map(
                lambda text: base64.b64encode(text.encode()).decode()
            )
            | st.just(value)
        )
        return envelope
    target = {
        "top": envelope,
        "headers": envelope["headers"],
        "properties": envelope["properties"],
        "delivery_info": envelope["properties"]["delivery_info"],
    }[where]
    field = draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
    if draw(st.booleans()):
        target.pop(field, None)
    else:
        target[field] = value
    return envelope


def _bodies(app: Any, bucket: str) -> st.SearchStrategy[str]:
    pointer = st.builds(
        pointer_body,
        st.sampled_from([bucket, f"{bucket}-other"]) | st.text(max_size=10),
        st.sampled_from([claim_check_key(), "reports/q3.csv", "claim-check/../x"])
        | st.text(max_size=20),
    )
    return st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
        _json.map(json.dumps),
        _json.map(sqs_body),
        _broken_envelope(app).map(sqs_body),
        _broken_envelope(app).map(json.dumps),
        pointer,
    )


@pytest.fixture(scope="module")
def work_channel(provisioned: Any, app: Any) -> Iterator[Any]:
    with app.connection_for_write() as conn:
        channel = conn.channel()
        yield channel
        channel.close()


def test_any_received_body_converts_to_a_message_or_a_poison_refusal(
    work_channel: Any, app: Any, sqs: Any, settings: Settings
) -> None:
    url = queue_url(sqs, settings, "default")

    @hypothesis_settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(body=_bodies(app, settings.bucket))
    def check(body: str) -> None:
        received = {
            "Body": body,
            "ReceiptHandle": "handle",
            "MessageId": "id",
            "Attributes": {"ApproximateReceiveCount": "1"},
        }
        # when the transport converts what SQS handed over (a work queue)
        payload = work_channel._message_to_python(received, "default", url)
        # then kombu can build its Message, with header mapping Celery reads...
        message = work_channel.Message(payload, channel=work_channel)
        assert isinstance(message.headers, dict)
        assert message.delivery_info["sqs_message"] is received
        # ...and a refusal is a poison dead letter to be, naming the error
        refusal = refusal_of(message)
        if refusal is not None:
            assert refusal["reason"] == "poison"
            assert refusal["error_type"]
            assert "task" not in message.headers  # Celery never mistakes it for a task

    check()
