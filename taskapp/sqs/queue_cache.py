"""Start-up calls: a worker lists its queues once, and declaring a queue counts nothing.

Why stock spends calls here (kombu 5.7, ``kombu/transport/SQS/__init__.py``):

* every ``Channel.__init__`` lists the prefix's queues (``_update_queue_cache``: ListQueues)
  into a cache that lives on its *connection*. A worker opens several connections and channels
  (the consumer's, remote control's, the event dispatcher's, the pool's producers for retries),
  and each lists the same prefix again: 3 ListQueues at start-up, a 4th in taskapp's preflight.
* ``queue_declare`` (kombu's virtual channel) answers AMQP's declare-ok with the queue's message
  count, which the SQS channel reads with GetQueueAttributes. Celery's consumer declares every
  queue it consumes at start-up and on every reconnect, and never reads the count: a plain
  worker's ten queues cost ten GetQueueAttributes.

What we change:

* a channel takes its prefix's listing from :func:`taskapp.sqs.plumbing.listed_queue_urls`:
  the process's last listing of the same endpoint, region, access key and prefix if it is
  younger than ``LISTING_TTL`` (5 minutes), else a new one, kept for the next channel (the
  preflight's listing counts). A queue the listing lacks is looked up as kombu does (ListQueues
  on its exact name, then CreateQueue); a queue deleted through a channel leaves the listing.
* a non-passive declare ensures the queue exists and answers a count of 0. A *passive* declare
  is the AMQP idiom for "does it exist, how deep is it?" (kombu's ``SimpleQueue.qsize``,
  ``celery amqp``): it still asks SQS.

What it costs: a queue deleted by another process stays in the listing for up to 5 minutes
(kombu's own cache keeps it for the connection's life), and the declare-ok count of a consumer's
declare is 0 (SQS's count is approximate anyway; nothing in Celery reads it).
"""

from __future__ import annotations

from typing import Any

from amqp.protocol import queue_declare_ok_t

from taskapp.sqs.kombu_channel import ChannelMixin
from taskapp.sqs.plumbing import forget_queue_url, listed_queue_urls

__all__ = ["SharedQueueCache"]


class SharedQueueCache(ChannelMixin):
    """Channel mixin: one queue listing per process, and declares without a message count."""

    def _update_queue_cache(self, queue_name_prefix: str) -> None:
        if self.predefined_queues or queue_name_prefix != self.queue_name_prefix:
            # predefined (no listing at all), or a lookup of one queue the listing lacked
            super()._update_queue_cache(queue_name_prefix)
            return
        self._queue_cache.update(listed_queue_urls(self.sqs(), queue_name_prefix))

    def queue_declare(self, queue: str | None = None, passive: bool = False, **kwargs: Any) -> Any:
        if queue is None or passive:
            return super().queue_declare(queue, passive, **kwargs)
        self._new_queue(queue, **kwargs)
        return queue_declare_ok_t(queue, 0, 0)

    def _delete(self, queue: str, exchange: str | None = None, *args: Any, **kwargs: Any) -> None:
        super()._delete(queue, exchange, *args, **kwargs)
        forget_queue_url(self.canonical_queue_name(queue))
