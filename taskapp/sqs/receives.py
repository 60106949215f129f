"""Full receives: a busy worker asks SQS for 10 messages a call, not for whatever slot is free.

Why stock receives few messages a call (kombu 5.7, ``kombu/transport/SQS/__init__.py``): each
consumed queue has a loop of its own (``_schedule_queue`` -> ``_get_bulk_async`` ->
``_loop1``), all in flight at once. A receive asks for ``min(prefetch estimate, 10)``
messages, the estimate being the prefetch slots not held. After a receive that returned
messages the next one is sent at once, however few slots are free; with none free the loop
looks again after ``polling_interval``. A busy worker therefore receives the handful of slots
freed since it last looked (a drain of 300 no-op tasks, ``-c 2``, prefetch 8: 87 receives,
3.4 messages each), and every receive is a billed request.

What we change: a receive is sent only once the estimate reaches the *fill*,
``min(10, ceil(prefetch_count / 2))``; until then the loop looks again after
``polling_interval``, as stock does when no slot is free. With a prefetch count of 20 or more
(``worker_prefetch_multiplier`` x concurrency) every receive of a busy worker asks for 10
while 10 or more messages are still held, so the pool never waits for a receive. A worker
holding nothing always receives (the estimate is the whole prefetch count, at least the fill),
so an idle worker's latency is unchanged. No prefetch limit (0): unchanged, 10 a call.

What it costs: a freed slot waits until half the prefetch is free, so a worker holds between
half and all of its prefetch count while busy, and a queue with a message waiting while the
worker is busy with another waits for the fill too (up to ``polling_interval`` after it).
"""

from __future__ import annotations

from typing import Any

from vine import ensure_promise

from taskapp.sqs.kombu_channel import ChannelMixin
from taskapp.sqs.plumbing import BATCH

__all__ = ["FullReceives", "receive_size"]


def receive_size(prefetch_count: int, held: int) -> int:
    """Messages to ask one receive for, with ``held`` of ``prefetch_count`` slots taken
    (0: wait; ``prefetch_count`` 0 is no limit)."""
    if not prefetch_count:
        return BATCH
    free = max(prefetch_count - held, 0)
    fill = min(BATCH, -(-prefetch_count // 2))
    return min(free, BATCH) if free >= fill else 0


class FullReceives(ChannelMixin):
    """Channel mixin: receive only when a full receive (see the module docstring) fits."""

    def _get_bulk_async(self, queue: str, callback: Any = None) -> Any:
        qos = self.qos
        # kombu's own count of held slots (QoS.can_consume)
        held = len(qos._delivered or ()) - len(qos._dirty or ())
        count = receive_size(qos.prefetch_count, held)
        if count:
            return self._get_async(queue, count, callback=callback)
        callback = ensure_promise(callback)
        callback([])  # nothing fetched: _loop1 looks again after polling_interval
        return callback
