"""The transport taskapp selects: ``broker_transport = "taskapp.sqs.transport:Transport"``.

``config/celery.py`` names :class:`Transport`; the broker URL stays ``sqs://`` so boto3's
endpoint and credential chain apply unchanged. Its channel is kombu's SQS channel with, from
the first base searched to the last:

* :class:`taskapp.sqs.monitoring.MonitoringChannel`: Celery events and remote control through
  SNS fan-out, over per-process queues (:mod:`taskapp.sqs.ephemeral`), with event sampling
  (:mod:`taskapp.sqs.sampling`), so Flower, ``celery events``, ``inspect`` and ``control`` work.
* :class:`taskapp.sqs.kombu_fixes.KombuFixes`: kombu defects worked around (queue-URL cache,
  a closed channel's late poll).
* :class:`taskapp.sqs.queue_cache.SharedQueueCache`: start-up calls (one queue listing per
  process, declares without a GetQueueAttributes).
* :class:`taskapp.sqs.receives.FullReceives`: a busy worker's receives ask for 10 messages.
* :class:`taskapp.sqs.outages.ReceiveOutages`: a failed receive (refused, reset, timed out,
  throttled, 5xx, unparsable) backs off and is retried instead of stopping the worker.
* :class:`taskapp.sqs.delivery.Channel`: work-queue delivery (redelivery flag, long-delay hops,
  claim check, refusals instead of crashes, rejection backoff) and batched acknowledgements
  (:mod:`taskapp.sqs.acks`).
"""

from __future__ import annotations

from kombu.transport import SQS

from taskapp.sqs import delivery
from taskapp.sqs.kombu_fixes import KombuFixes
from taskapp.sqs.monitoring import MonitoringChannel
from taskapp.sqs.outages import ReceiveOutages
from taskapp.sqs.queue_cache import SharedQueueCache
from taskapp.sqs.receives import FullReceives

__all__ = ["Channel", "Transport"]


class Channel(
    MonitoringChannel,
    KombuFixes,
    SharedQueueCache,
    FullReceives,
    ReceiveOutages,
    delivery.Channel,
):
    """taskapp's SQS channel: monitoring over SNS, kombu fixes, fewer start-up calls, full
    receives, outage-proof receives, reliable work-queue delivery."""


class Transport(SQS.Transport):
    """taskapp's SQS transport with SNS-backed ``fanout`` and ``topic`` exchanges."""

    Channel = Channel

    implements = SQS.Transport.implements.extend(
        exchange_type=frozenset(["direct", "topic", "fanout"]),
    )
