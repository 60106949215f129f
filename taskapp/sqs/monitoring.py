"""Monitoring over SQS: Celery events and remote control through SNS fan-out.

The channel side of :mod:`taskapp.sqs.transport` (the transport ``config/celery.py`` selects)
that makes Flower, ``celery events``, ``celery inspect`` and ``celery control`` work against
workers on SQS.

Why nothing works on stock kombu/celery
---------------------------------------
* kombu's SQS transport declares ``exchange_type={'direct'}``, so Celery never starts the
  worker's remote-control consumer (``celery/worker/consumer/control.py`` includes it only if
  the transport supports ``fanout``), and ``celery inspect`` answers "No nodes replied".
* Events are published to the ``celeryev`` *topic* exchange. On a virtual transport the bindings
  of an exchange live in each process's memory, so the worker knows no queue bound to it and
  drops every event.
* Remote-control replies go to the ``reply.celery.pidbox`` *direct* exchange: same problem, the
  worker does not know the caller's binding.

What this module changes (kombu 5.7 already ships SNS-backed fan-out: ``supports_fanout``)
----------------------------------------------------------------------------------------
1. The transport advertises ``direct``, ``topic`` and ``fanout`` exchange types, and turns on
   kombu's SNS fan-out: a fanout exchange (``celery.pidbox``) is an SNS topic
   ``<prefix>celery-pidbox``; every queue consuming from it is subscribed with
   ``RawMessageDelivery``.
2. The ``celeryev`` topic exchange is routed the same way (SNS topic ``<prefix>celeryev``).
   Routing keys are not filtered: Celery's event receivers bind ``#`` (everything).
3. Remote-control replies are addressed by queue name. Before a request leaves, the caller's
   ``reply_to.routing_key`` is rewritten to the SQS name of its reply queue, and the worker
   sends its reply straight to that queue (never creating it: a caller that gave up has
   deleted it, and the reply is dropped).
4. Per-process queues (event receivers, remote-control mailboxes, reply queues) are
   *ephemeral*: named, created, leased and deleted as :mod:`taskapp.sqs.ephemeral` describes.
   Their no-ack messages are deleted with the blocking client (the async one needs an event
   loop that Flower and ``celery inspect`` lack). A reply queue is polled by its caller's
   ``drain_events`` only, never by the process's event loop (where a worker runs in the same
   process, that loop would take the reply from under the caller).
5. Task events can be sampled (``event_sample_rate`` transport option, from
   ``TASKAPP_EVENT_SAMPLE_RATE``): see :mod:`taskapp.sqs.sampling`.

Production (``TASKAPP_PREDEFINED_QUEUES``): work queues stay predefined; ephemeral queues are
always created by this module, so the role needs ``sqs:CreateQueue``, ``DeleteQueue``,
``TagQueue``, ``ListQueueTags``, ``SetQueueAttributes`` on ``<prefix>mon-*`` and
``sns:CreateTopic``, ``Publish``, ``Subscribe``, ``Unsubscribe``,
``ListSubscriptionsByTopic`` on the two topics.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from amqp.protocol import queue_declare_ok_t
from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger
from kombu.transport import SQS
from kombu.transport.SQS.exceptions import DoesNotExistQueueException, UndefinedQueueException
from kombu.transport.virtual.exchange import DirectExchange, ExchangeType, TopicExchange

from taskapp.sqs.boto import config
from taskapp.sqs.ephemeral import (
    EPHEMERA,
    EPHEMERAL_INFIX,
    EPHEMERAL_RETENTION,
    LEASE_INTERVAL,
    LEASE_TAG,
    REPLY_WAIT_SECONDS,
    Owned,
    delete_owned,
    ephemeral_kind,
)
from taskapp.sqs.event_outages import EventOutages
from taskapp.sqs.kombu_channel import ChannelMixin, Payload, SQSMessage
from taskapp.sqs.plumbing import queue_is_missing
from taskapp.sqs.sampling import json_body, sample_task_events

__all__ = ["MonitoringChannel", "PidboxReplyExchange", "SNS_TOPIC_EXCHANGES", "SnsTopicExchange"]

logger = get_logger(__name__)

#: Topic exchanges whose bindings are SNS subscriptions (Celery's event exchange).
SNS_TOPIC_EXCHANGES = ("celeryev",)

_REPLY_EXCHANGE = re.compile(r"^reply\.[^.]+\.pidbox$")


class SnsTopicExchange(TopicExchange):
    """Topic exchange that publishes to SNS when the exchange is SNS-backed (``celeryev``)."""

    channel: MonitoringChannel  # set by kombu's ExchangeType.__init__

    def deliver(self, message: Payload, exchange: str, routing_key: str, **kwargs: Any) -> None:
        if self.channel._exchange_is_fanout(exchange):
            # Best effort: while SNS fails, events are dropped (taskapp/sqs/event_outages.py).
            self.channel.event_outages.publish(
                lambda: self.channel._put_fanout(exchange, message, routing_key, **kwargs)
            )
        else:
            super().deliver(message, exchange, routing_key, **kwargs)


class PidboxReplyExchange(DirectExchange):
    """Sends a remote-control reply to the queue named by its routing key (see
    :class:`MonitoringChannel`)."""

    type = "pidbox-reply"
    channel: MonitoringChannel  # set by kombu's ExchangeType.__init__

    def lookup(self, table: Any, exchange: str, routing_key: str, default: str | None) -> set[str]:
        return {routing_key}

    def deliver(self, message: Payload, exchange: str, routing_key: str, **kwargs: Any) -> None:
        self.channel._put_reply(routing_key, message, **kwargs)


class MonitoringChannel(ChannelMixin):
    """Channel mixin: SNS-backed events and remote control, and ephemeral monitoring queues."""

    exchange_types = {
        **SQS.Channel.exchange_types,
        "topic": SnsTopicExchange,
        PidboxReplyExchange.type: PidboxReplyExchange,
    }

    # -- capabilities -------------------------------------------------------------------------
    @property
    def supports_fanout(self) -> bool:  # type: ignore[override]
        return bool(self.transport_options.get("supports_fanout", True))

    @property
    def event_outages(self) -> EventOutages:
        """This channel's event publishing during SNS outages."""
        outages: EventOutages | None = self.__dict__.get("_event_outages")
        if outages is None:
            outages = self.__dict__["_event_outages"] = EventOutages()
        return outages

    def close(self) -> None:
        # Its queued events go out while the channel can still send them (a producer's
        # task-sent events, a worker's offline event): bounded by FLUSH_SECONDS.
        outages: EventOutages | None = self.__dict__.get("_event_outages")
        if outages is not None:
            outages.flush()
        super().close()

    @property
    def event_sample_rate(self) -> float:
        return float(self.transport_options.get("event_sample_rate", 1.0))

    def _exchange_is_fanout(self, exchange_name: str) -> bool:
        if not self.supports_fanout:
            return False
        try:
            kind = (self.state.exchanges or {})[exchange_name]["type"]  # never None in kombu
        except KeyError:
            return False
        return kind == "fanout" or (kind == "topic" and exchange_name in SNS_TOPIC_EXCHANGES)

    def typeof(self, exchange: str, default: str = "direct") -> ExchangeType:
        if exchange and _REPLY_EXCHANGE.match(exchange):
            # kombu's Channel.__init__ replaces the classes in exchange_types with instances.
            return cast(ExchangeType, self.exchange_types[PidboxReplyExchange.type])
        return super().typeof(exchange, default)

    # -- names ----------------------------------------------------------------------------------
    def canonical_queue_name(self, queue_name: str) -> str:
        if self._is_ephemeral_sqs_name(queue_name):
            return queue_name
        kind = ephemeral_kind(queue_name)
        if kind is None:
            return super().canonical_queue_name(queue_name)
        return EPHEMERA.name(self.queue_name_prefix, queue_name, kind)

    def _is_ephemeral_sqs_name(self, name: str | None) -> bool:
        return name is not None and name.startswith(self.queue_name_prefix + EPHEMERAL_INFIX)

    def _ephemeral(self, queue: str | None) -> str | None:
        """The SQS name if ``queue`` (kombu or SQS name) is an ephemeral queue, else None."""
        if queue is None:
            return None
        if self._is_ephemeral_sqs_name(queue) or ephemeral_kind(queue):
            return self.canonical_queue_name(queue)
        return None

    # -- ephemeral queues live outside predefined_queues ----------------------------------------
    def sqs(self, queue: str | None = None) -> Any:
        return super().sqs(None if self._ephemeral(queue) else queue)

    def asynsqs(self, queue: str | None = None) -> Any:
        return super().asynsqs(None if self._ephemeral(queue) else queue)

    def _resolve_queue_url(self, queue: str) -> str:
        name = self._ephemeral(queue)
        if name is None:
            return super()._resolve_queue_url(queue)
        if name in self._queue_cache:
            return self._queue_cache[name]
        if EPHEMERA.minted_not_created(name):
            # Named a moment ago with a random token: kombu creates it without asking first.
            raise DoesNotExistQueueException(f"Queue '{name}' doesn't exist")
        try:
            url: str = self.sqs().get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if queue_is_missing(exc):
                raise DoesNotExistQueueException(f"Queue '{name}' doesn't exist") from None
            raise
        self._queue_cache[name] = url
        return url

    def queue_declare(self, queue: str | None = None, passive: bool = False, **kwargs: Any) -> Any:
        if queue is None or passive or ephemeral_kind(queue) != "reply":
            return super().queue_declare(queue, passive, **kwargs)
        # kombu declares a reply queue twice per call (before the request, and to consume the
        # replies) and each time asks SQS for its length, which the mailbox never reads.
        self._new_queue(queue, **kwargs)
        return queue_declare_ok_t(queue, 0, 0)

    def _create_queue(self, queue_name: str, attributes: dict[str, str]) -> dict[str, Any]:
        if not self._is_ephemeral_sqs_name(queue_name):
            return super()._create_queue(queue_name, attributes)
        now = str(int(time.time()))
        resp: dict[str, Any] = self.sqs().create_queue(
            QueueName=queue_name,
            Attributes={**attributes, "MessageRetentionPeriod": str(EPHEMERAL_RETENTION)},
            tags={
                "taskapp:ephemeral": queue_name.rsplit("-", 2)[-2],
                "taskapp:owner": f"{socket.gethostname()}:{os.getpid()}",
                "taskapp:created": now,
                LEASE_TAG: now,
            },
        )
        self._own(queue_name, resp["QueueUrl"])
        return resp

    def _own(self, name: str, url: str) -> None:
        if EPHEMERA.clients is None:
            EPHEMERA.clients = (
                self._cleanup_client("sqs"),
                self._cleanup_client("sns"),
            )
        EPHEMERA.owned[name] = Owned(url, os.getpid())
        EPHEMERA.touched[name] = time.time()

    def _cleanup_client(self, service: str) -> Any:
        # Cleanup at exit must not hang on an endpoint that is gone.
        return self._new_boto_client(
            service=service,
            region=self.region,
            access_key_id=self.conninfo.userid,
            secret_access_key=self.conninfo.password,
            config=config("quick"),
        )

    def _delete(self, queue: str, exchange: str | None = None, *args: Any, **kwargs: Any) -> None:
        name = self._ephemeral(queue)
        if name is None:
            super()._delete(queue, exchange, *args, **kwargs)
            return
        url = self._queue_cache.pop(name, None)
        owned = EPHEMERA.forget(name)
        if owned is None and url is None:
            return
        owned = owned or Owned(url or "", os.getpid())
        if exchange and self._exchange_is_fanout(exchange):
            self.fanout.subscriptions._subscription_arn_cache.pop(f"{exchange}:{queue}", None)
        delete_owned(self.sqs(), self.fanout.get_client, name, owned)

    # -- consuming (ephemeral queues: leases, short reply polls, blocking deletes) ---------------
    def _receive_message(self, queue: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._touch(queue)
        if ephemeral_kind(queue) == "reply":
            # A caller drains its reply queue with a timeout of a second or so, which a blocking
            # 20 s long poll would overrun on every call.
            kwargs["wait_time_seconds"] = REPLY_WAIT_SECONDS
        return super()._receive_message(queue, *args, **kwargs)

    def _schedule_queue(self, queue: str) -> None:
        # A reply queue is drained by its caller alone: kombu's pidbox ``_collect`` calls
        # ``drain_events``, which polls it with the blocking client. kombu's ``basic_consume``
        # also schedules an async poll on the process-wide event loop; in a process that runs a
        # worker too, that poll took the reply about half the time and handed it over only after
        # the caller's timeout (or after the caller had left), so ``inspect()`` there answered
        # None or took over a second (tests/sqs/test_reply_path.py).
        if ephemeral_kind(queue) == "reply":
            return
        super()._schedule_queue(queue)

    def _get_async(
        self, queue: str, count: int = 1, callback: Callable[..., Any] | None = None
    ) -> Any:
        self._touch(queue)
        return super()._get_async(queue, count, callback)

    def _touch(self, queue: str) -> None:
        """Refresh the lease of an ephemeral queue being consumed (at most once a minute)."""
        name = self._ephemeral(queue)
        if name is None or name not in EPHEMERA.owned:
            return
        now = time.time()
        if now - EPHEMERA.touched.get(name, 0) < LEASE_INTERVAL:
            return
        EPHEMERA.touched[name] = now
        try:
            self.sqs().tag_queue(QueueUrl=EPHEMERA.owned[name].url, Tags={LEASE_TAG: str(int(now))})
        except (BotoCoreError, ClientError) as exc:  # an outage: the next touch tries again
            logger.warning("could not refresh the lease of %s: %s", name, exc)

    def _delete_message(self, queue_name: str, message: SQSMessage) -> None:
        # kombu deletes a no-ack message with its async client, which needs an event loop that
        # Flower and `celery inspect` lack: the blocking client works everywhere.
        if self._ephemeral(queue_name) is None:
            super()._delete_message(queue_name, message)
            return
        try:
            self.sqs().delete_message(
                QueueUrl=self._new_queue(queue_name), ReceiptHandle=message["ReceiptHandle"]
            )
        except ClientError as exc:
            logger.debug("could not delete a message of %s: %s", queue_name, exc)

    def basic_consume(
        self,
        queue: str,
        no_ack: bool,
        callback: Callable[..., Any] | None,
        consumer_tag: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        name = self._ephemeral(queue)
        if name is not None:
            try:
                exchange = self._get_exchange_for_queue(queue)
            except UndefinedQueueException:
                exchange = None
            if exchange and self._exchange_is_fanout(exchange):
                arn = self.fanout.subscriptions.subscribe_queue(
                    queue_name=queue, exchange_name=exchange
                )
                owned = EPHEMERA.owned.get(name)
                if owned is not None and arn not in owned.subscriptions:
                    owned.subscriptions.append(arn)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, *args, **kwargs)

    # -- publishing -----------------------------------------------------------------------------
    def basic_publish(
        self, message: Payload, exchange: str, routing_key: str, **kwargs: Any
    ) -> None:
        if exchange in SNS_TOPIC_EXCHANGES and (routing_key or "").startswith("task."):
            if not self._sample_task_events(message):
                return
        elif exchange and self._exchange_is_fanout(exchange):
            self._address_reply(message)
        super().basic_publish(message, exchange, routing_key, **kwargs)

    def _sample_task_events(self, message: dict[str, Any]) -> bool:
        """Drop unsampled task events from ``message``; False if none is left to send."""
        return sample_task_events(message, self.event_sample_rate)

    def _address_reply(self, message: dict[str, Any]) -> None:
        """Point a remote-control request's ``reply_to`` at this process's reply queue by name."""
        body = json_body(message)
        reply_to = body.get("reply_to") if isinstance(body, dict) else None
        if not reply_to or not _REPLY_EXCHANGE.match(reply_to.get("exchange") or ""):
            return
        kombu_name = f"{reply_to['routing_key']}.{reply_to['exchange']}"
        if ephemeral_kind(kombu_name) != "reply":
            return
        reply_to["routing_key"] = self.canonical_queue_name(kombu_name)
        message["body"] = json.dumps(body)

    def _put_reply(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Send a reply to an existing reply queue; drop it if the caller already left."""
        if not self._is_ephemeral_sqs_name(queue):
            logger.debug("dropping a reply without a reply queue name: %s", queue)
            return
        guessed = EPHEMERA.sibling_url(queue)
        try:
            self._send_reply(queue, message, guessed, **kwargs)
        except DoesNotExistQueueException:
            logger.debug("reply queue %s is gone, reply dropped", queue)
        except ClientError as exc:
            if not queue_is_missing(exc):
                raise
            logger.debug("reply queue %s is gone, reply dropped", queue)
        finally:
            # Each call of a caller names a new reply queue: a URL kept here would never be used
            # again, and the cache would grow by one entry per request this worker answers.
            self._queue_cache.pop(queue, None)

    def _send_reply(
        self, queue: str, message: dict[str, Any], guessed: str | None, **kwargs: Any
    ) -> None:
        """Send with the URL guessed from our own queues (no GetQueueUrl on the way of the reply);
        if that queue does not exist, ask SQS for the URL once (another account or endpoint)."""
        if guessed is not None:
            self._queue_cache[queue] = guessed
            try:
                self._put(queue, message, **kwargs)
                return
            except ClientError as exc:
                if not queue_is_missing(exc):
                    raise
                self._queue_cache.pop(queue, None)
        self._resolve_queue_url(queue)
        self._put(queue, message, **kwargs)
