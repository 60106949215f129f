"""The monitoring transport's contract with kombu and Celery, and its fixes, in-process.

These fail when a kombu/celery/flower upgrade changes something the extension relies on: the
capability check that starts remote control, the event exchange, kombu's mailbox queue names,
the private SQS channel methods it overrides, and Flower's broker dispatch. Nothing here
consumes on the event loop, so the in-process session worker is never disturbed.
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from celery.events.event import get_exchange
from celery.events.receiver import EventReceiver
from celery.worker.consumer.control import Control
from kombu.pidbox import Mailbox
from kombu.transport import SQS

from config.settings import Settings
from taskapp.app import app
from taskapp.aws import client
from taskapp.sqs import ephemeral
from taskapp.sqs.admin.sweep import sweep_stale
from taskapp.sqs.ephemeral import LEASE_TAG, ephemeral_kind
from taskapp.sqs.monitoring import SNS_TOPIC_EXCHANGES
from taskapp.sqs.sampling import keeps_task_event
from taskapp.sqs.transport import Transport


@pytest.fixture
def connection(provisioned: list[Any]) -> Any:
    """A broker connection of the app (our transport) with its own channel."""
    with app.connection_for_write() as conn:
        yield conn


def test_celery_starts_remote_control_on_this_transport(connection: Any) -> None:
    # given a worker consumer on our transport
    consumer = SimpleNamespace(app=app, conninfo=connection)
    # then Celery's Control bootstep (remote control) is included
    assert connection.transport_cls == "taskapp.sqs.transport:Transport"
    assert Control.include_if(Control.__new__(Control), consumer)
    assert {"direct", "topic", "fanout"} <= Transport.implements.exchange_type


def test_events_and_mailboxes_use_names_the_transport_recognises(connection: Any) -> None:
    # given Celery's event exchange and kombu's mailbox and receiver queue names
    exchange = get_exchange(connection, name=app.conf.event_exchange)
    mailbox = Mailbox("celery", type="fanout")
    receiver = EventReceiver(connection, app=app)
    # then they are the ones routed through SNS and treated as per-process queues
    assert exchange.name in SNS_TOPIC_EXCHANGES
    assert exchange.type in ("topic", "fanout")
    assert app.control.mailbox.type == "fanout"
    assert app.control.mailbox.namespace == "celery"
    assert ephemeral_kind(mailbox.get_reply_queue().name) == "reply"
    assert ephemeral_kind(mailbox.get_queue("celery@host.example").name) == "control"
    assert ephemeral_kind(receiver.queue.name) == "events"
    assert ephemeral_kind("email") is None
    assert ephemeral_kind("celery.pidbox") is None


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("_get_async", ["queue", "count", "callback"]),
        ("_receive_message", ["queue", "max_number_of_messages", "wait_time_seconds"]),
        ("_loop1", ["queue", "messages_fetched"]),
        ("_schedule_queue", ["queue"]),
        ("_on_messages_ready", ["queue", "qname", "messages"]),
        # the receive path taskapp/sqs/delivery.py re-implements so that nothing raises there
        ("_message_to_python", ["message", "queue_name", "q_url"]),
        ("_messages_to_python", ["messages", "queue"]),
        ("_get", ["queue"]),
        ("_release_messages", ["queue", "qname", "messages"]),
        ("_envelope_payload", ["payload", "raw_text", "message", "q_url"]),
        ("_prepare_json_payload", ["text"]),
        ("_decode_python_message_body", ["raw_body"]),
        ("_delete", ["queue", "exchange"]),
        ("_delete_message", ["queue_name", "message"]),
        ("_create_queue", ["queue_name", "attributes"]),
        ("_resolve_queue_url", ["queue"]),
        ("_put_fanout", ["exchange", "message", "routing_key"]),
        ("_exchange_is_fanout", ["exchange_name"]),
        ("_get_exchange_for_queue", ["queue_name"]),
        ("basic_consume", ["queue", "no_ack", "callback", "consumer_tag"]),
        ("basic_publish", ["message", "exchange", "routing_key"]),
        ("canonical_queue_name", ["queue_name"]),
        ("sqs", ["queue"]),
        ("asynsqs", ["queue"]),
    ],
)
def test_kombu_methods_the_channel_overrides_or_calls_keep_their_signature(
    name: str, params: list[str]
) -> None:
    # given kombu's SQS channel (the class our channel extends)
    method = getattr(SQS.Channel, name)
    # then each method we override or call still exists and takes the arguments we pass
    assert list(inspect.signature(method).parameters)[1 : len(params) + 1] == params


def test_kombu_sns_fanout_internals_are_still_there(connection: Any) -> None:
    channel = connection.default_channel
    subscriptions = channel.fanout.subscriptions
    assert callable(subscriptions.subscribe_queue)
    assert callable(subscriptions.cleanup)
    assert isinstance(subscriptions._subscription_arn_cache, dict)
    assert "supports_fanout" in vars(SQS.Channel)


def test_flower_dispatch_answers_sqs_with_our_broker() -> None:
    import flower.utils.broker
    import flower.views

    from taskapp.sqs.admin.flower_broker import SQSBroker, install

    install()
    with app.connection() as conn:
        url = conn.as_uri(include_password=True)
    broker = flower.views.Broker(url, http_api=None, broker_options={"queue_name_prefix": "x-"})
    assert isinstance(broker, SQSBroker)
    assert broker.prefix == "x-"
    assert flower.utils.broker.Broker is flower.views.Broker
    assert not isinstance(flower.views.Broker("amqp://guest@localhost//", http_api=None), SQSBroker)


def test_a_deleted_queue_can_be_declared_again_on_the_same_connection(
    connection: Any, sqs: Any, settings: Settings
) -> None:
    # given a queue declared and deleted on one connection (kombu's stale-URL defect)
    name = f"redeclare{uuid.uuid4().hex[:6]}"
    channel = connection.channel()
    channel.exchange_declare(name, type="direct")
    channel.queue_declare(name)
    channel.queue_bind(name, exchange=name, routing_key=name)
    channel.queue_delete(name)
    # when it is declared again and used
    channel.queue_declare(name)
    channel.basic_publish(channel.prepare_message("hi"), exchange="", routing_key=name)
    # then it was re-created and holds the message
    url = sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"]
    assert sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.delete_queue(QueueUrl=url)
    channel.close()


def test_a_closed_channels_late_poll_is_ignored(connection: Any) -> None:
    # given a channel closed while its poll was pending on a shared event loop
    channel = connection.channel()
    channel.close()
    # when the poll's callbacks run afterwards, then nothing raises
    assert channel._loop1("email") is None
    assert channel._schedule_queue("email") is None
    assert channel._on_messages_ready("url", "email", {"Messages": [{}]}) == 0


def test_an_ephemeral_queue_is_tagged_named_afresh_and_deleted_with_its_subscription(
    connection: Any, sqs: Any, settings: Settings
) -> None:
    # given an event receiver's queue declared, bound to celeryev and consumed
    channel = connection.channel()
    channel.hub = None  # consume synchronously, never on a shared event loop
    receiver = EventReceiver(channel, app=app)
    queue = receiver.queue(channel)
    queue.declare()
    channel.basic_consume(queue.name, True, lambda m: None, "tag")
    sqs_name = channel.canonical_queue_name(queue.name)
    url = sqs.get_queue_url(QueueName=sqs_name)["QueueUrl"]
    tags = sqs.list_queue_tags(QueueUrl=url)["Tags"]
    subs = ephemeral.EPHEMERA.owned[sqs_name].subscriptions
    # when kombu deletes it
    channel.basic_cancel("tag")
    queue.delete()
    # then it was named in the monitoring namespace, leased, subscribed, and is gone with it
    assert sqs_name.startswith(settings.queue_prefix + "mon-ev-")
    assert float(tags[LEASE_TAG]) <= time.time()
    assert tags["taskapp:ephemeral"] == "ev"
    assert len(subs) == 1
    assert sqs_name not in _queue_names(sqs, settings)
    arns = {
        s["SubscriptionArn"] for s in client("sns", settings).list_subscriptions()["Subscriptions"]
    }
    assert subs[0] not in arns
    # and declaring it again gives a new name (AWS refuses a deleted name for 60 s)
    assert channel.canonical_queue_name(queue.name) != sqs_name
    channel.close()


def test_ephemeral_queues_work_when_work_queues_are_predefined(
    provisioned: list[Any], sqs: Any, settings: Settings
) -> None:
    # given production mode: kombu may not list, create or delete the work queues
    from kombu.transport.SQS.exceptions import UndefinedQueueException

    from taskapp.queues import queue_names
    from taskapp.sqs.admin.provision import predefined_queues

    options = {"predefined_queues": predefined_queues(sqs, settings.queue_prefix, queue_names())}
    with app.connection_for_write(transport_options=options) as conn:
        channel = conn.channel()
        channel.hub = None
        with pytest.raises(UndefinedQueueException):
            channel.queue_declare("not-provisioned")
        # when an event receiver's queue is declared, consumed and deleted
        queue = EventReceiver(channel, app=app).queue(channel)
        queue.declare()
        channel.basic_consume(queue.name, True, lambda m: None, "tag")
        sqs_name = channel.canonical_queue_name(queue.name)
        created = sqs_name in _queue_names(sqs, settings)
        channel.basic_cancel("tag")
        queue.delete()
        channel.close()
    # then this module created and removed it anyway
    assert created
    assert sqs_name not in _queue_names(sqs, settings)


def _queue_names(sqs: Any, settings: Settings) -> set[str]:
    urls = sqs.list_queues(QueueNamePrefix=settings.queue_prefix).get("QueueUrls", [])
    return {u.rsplit("/", 1)[-1] for u in urls}


def test_a_request_names_its_reply_queue_for_the_worker(connection: Any) -> None:
    # given a remote-control request with kombu's reply_to (an oid routing key)
    channel = connection.channel()
    channel.exchange_declare("celery.pidbox", type="fanout")
    reply = Mailbox("celery", type="fanout").get_reply_queue()
    oid = reply.routing_key
    body = {"method": "ping", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": oid}}
    message = channel.prepare_message(json.dumps(body), content_type="application/json")
    # when it is addressed
    channel._address_reply(message)
    # then its routing key is the reply queue's SQS name, which the worker's reply exchange uses
    routed = json.loads(message["body"])["reply_to"]["routing_key"]
    assert routed == channel.canonical_queue_name(reply.name)
    assert channel.typeof("reply.celery.pidbox").lookup(
        [], "reply.celery.pidbox", routed, None
    ) == {routed}
    channel.close()


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_task_events_are_sampled_per_task_and_heartbeats_always_sent(rate: float) -> None:
    # given a thousand task ids
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    # when each is sampled at the rate (twice, as two processes would)
    kept = [i for i in ids if keeps_task_event(i, rate)]
    again = [i for i in ids if keeps_task_event(i, rate)]
    # then about that share is kept, and every process keeps the same tasks
    assert kept == again
    assert abs(len(kept) / len(ids) - rate) < 0.06


def test_unsampled_task_events_are_dropped_from_a_batch(connection: Any) -> None:
    channel = connection.channel()
    channel.connection.client.transport_options["event_sample_rate"] = 0.5
    try:
        kept_id = next(
            i for i in (str(uuid.uuid4()) for _ in range(100)) if keeps_task_event(i, 0.5)
        )
        dropped_id = next(
            i for i in (str(uuid.uuid4()) for _ in range(100)) if not keeps_task_event(i, 0.5)
        )
        events = [
            {"type": "task-started", "uuid": kept_id},
            {"type": "task-started", "uuid": dropped_id},
        ]
        batch = channel.prepare_message(json.dumps(events), content_type="application/json")
        lone = channel.prepare_message(json.dumps(events[1]), content_type="application/json")
        assert channel._sample_task_events(batch)
        assert [e["uuid"] for e in json.loads(batch["body"])] == [kept_id]
        assert not channel._sample_task_events(lone)
    finally:
        channel.connection.client.transport_options["event_sample_rate"] = 1.0
        channel.close()


def test_sweeper_removes_expired_queues_and_orphaned_subscriptions_only(
    provisioned: list[Any], sqs: Any, settings: Settings
) -> None:
    # given an ephemeral queue whose lease expired, a live one, and a subscription whose queue
    # is gone, all on the celeryev topic
    sns = client("sns", settings)
    topic = sns.create_topic(Name=settings.queue_prefix + "celeryev")["TopicArn"]
    now = time.time()

    def ephemeral(kind: str, lease: float) -> tuple[str, str]:
        name = f"{settings.queue_prefix}mon-{kind}-{uuid.uuid4().hex[:16]}"
        url = sqs.create_queue(QueueName=name, tags={LEASE_TAG: str(int(lease))})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        sub = sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return name, sub

    dead, dead_sub = ephemeral("ev", now - 3600)
    live, live_sub = ephemeral("ctl", now)
    gone, gone_sub = ephemeral("ev", now)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=gone)["QueueUrl"])
    # when the sweeper runs dry, then for real, with a ten-minute grace
    dry = sweep_stale(settings, grace_seconds=600, dry_run=True)
    names_after_dry = _queue_names(sqs, settings)
    report = sweep_stale(settings, grace_seconds=600)
    # then only the expired queue and the two orphaned subscriptions are removed
    assert dry == report
    assert dead in names_after_dry
    assert report.queues == (dead,)
    assert set(report.subscriptions) == {dead_sub, gone_sub}
    names = _queue_names(sqs, settings)
    assert dead not in names
    assert live in names
    arns = {
        s["SubscriptionArn"]
        for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    }
    assert live_sub in arns
    assert not {dead_sub, gone_sub} & arns
    sns.unsubscribe(SubscriptionArn=live_sub)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=live)["QueueUrl"])


def test_a_second_purge_within_the_minute_empties_the_queue_too(
    connection: Any, sqs: Any, settings: Settings
) -> None:
    # given a queue purged once (SQS then refuses PurgeQueue on it for 60 s)
    name = f"purge{uuid.uuid4().hex[:6]}"
    channel = connection.channel()
    channel.queue_declare(name)
    url = sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="first")
    channel.queue_purge(name)
    # when it holds 12 messages and is purged again within the minute
    for n in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    purged = channel.queue_purge(name)
    # then the purge succeeded and the queue is empty; and purging it again answers 0
    assert purged == 12
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")
    assert channel.queue_purge(name) == 0
    sqs.delete_queue(QueueUrl=url)
    channel.close()
