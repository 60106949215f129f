"""Workarounds for kombu 5.7 SQS channel defects that are not about our features.

* ``Channel._delete`` evicts the queue's *kombu* name from the queue-URL cache, but the cache is
  keyed by the converted SQS name (``x.reply.celery.pidbox`` vs ``x-reply-celery-pidbox``): the
  next declare on the same connection reuses a dead URL and fails with ``QueueDoesNotExist``.
  Here the SQS name is evicted too.
* An SQS channel uses the process-wide event loop. When a channel closes (``celery inspect``
  giving up in a process that also runs a worker) while its poll is pending, ``_loop1`` later
  runs on the closed channel and the worker dies with ``AttributeError: 'NoneType' object has
  no attribute 'polling_interval'``. Here a closed channel's late callbacks do nothing.
* ``Channel._purge`` sends ``PurgeQueue`` even for an empty queue, and SQS allows one per queue
  per 60 s: a second purge within the minute (``celery purge`` twice, ``app.control.purge()``
  in a test suite; Celery's ``test_revoked_by_headers_complex_canvas``) fails with
  ``PurgeQueueInProgress``. Here a refused purge deletes what is visible, 10 at a time, instead.

Each is a channel mixin step of :class:`taskapp.sqs.transport.Channel`; drop it once kombu
fixes the defect (its test in ``tests/sqs`` tells).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from taskapp.sqs.kombu_channel import ChannelMixin

__all__ = ["KombuFixes", "MAX_PURGE_BATCHES"]

#: Receive-and-delete rounds (10 messages each) a refused purge makes at most.
MAX_PURGE_BATCHES = 1000


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

    # -- one PurgeQueue per queue per minute ---------------------------------------------------
    def _purge(self, queue: str) -> int:
        size = int(self._size(queue))  # approximate: purge even at 0, SQS may not count yet
        url = self._new_queue(queue)
        sqs = self.sqs(queue=queue)
        try:
            sqs.purge_queue(QueueUrl=url)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "PurgeQueueInProgress" not in code:
                raise
            return self._delete_visible(sqs, url)
        return size

    @staticmethod
    def _delete_visible(sqs: Any, url: str) -> int:
        """Receive and delete what is visible in ``url``; return how many were deleted."""
        deleted = 0
        for _ in range(MAX_PURGE_BATCHES):
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                break
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            resp = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            deleted += len(resp.get("Successful", []))
        return deleted
