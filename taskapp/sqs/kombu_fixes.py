"""Workarounds for kombu 5.7 SQS channel defects that are not about our features.

* ``Channel._delete`` evicts the queue's *kombu* name from the queue-URL cache, but the cache is
  keyed by the converted SQS name (``x.reply.celery.pidbox`` vs ``x-reply-celery-pidbox``): the
  next declare on the same connection reuses a dead URL and fails with ``QueueDoesNotExist``.
  Here the SQS name is evicted too.
* An SQS channel uses the process-wide event loop. When a channel closes (``celery inspect``
  giving up in a process that also runs a worker) while its poll is pending, ``_loop1`` later
  runs on the closed channel and the worker dies with ``AttributeError: 'NoneType' object has
  no attribute 'polling_interval'``. Here a closed channel's late callbacks do nothing.

Each is a channel mixin step of :class:`taskapp.sqs.transport.Channel`; drop it once kombu
fixes the defect (its test in ``tests/sqs`` tells).
"""

from __future__ import annotations

from typing import Any

from taskapp.sqs.kombu_channel import ChannelMixin

__all__ = ["KombuFixes"]


class KombuFixes(ChannelMixin):
    """Channel mixin: the queue-URL cache eviction and closed-channel guards described above."""

    def _delete(self, queue: str, exchange: str | None = None, *args: Any, **kwargs: Any) -> None:
        super()._delete(queue, exchange, *args, **kwargs)
        # kombu evicts the kombu name; the cache is keyed by the SQS name.
        self._queue_cache.pop(self.canonical_queue_name(queue), None)

    # -- a closed channel's late poll must not kill a shared event loop -------------------------
    def _loop1(self, queue: str, messages_fetched: int | None = None) -> None:
        if self.closed or self.connection is None:
            return None
        return super()._loop1(queue, messages_fetched)

    def _schedule_queue(self, queue: str) -> None:
        if self.closed or self.connection is None:
            return None
        return super()._schedule_queue(queue)

    def _on_messages_ready(self, queue: str, qname: str, messages: dict[str, Any]) -> int:
        if self.closed or self.connection is None:
            return 0
        return super()._on_messages_ready(queue, qname, messages)
