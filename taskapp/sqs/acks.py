"""Ack coalescing: acknowledgements become DeleteMessageBatch calls, not one DeleteMessage each.

SQS bills per request and deletes up to 10 messages per call. kombu deletes every acknowledged
message with its own DeleteMessage; :class:`AckBatchMixin` queues the receipt handle instead and
a flusher thread sends the queued handles with DeleteMessageBatch (10 per call, grouped by
queue) as soon as 10 are waiting or ``ack_flush_interval`` seconds (transport option, default
0.1) after the oldest was queued, and once more when the channel closes or the process exits.

Ack semantics are unchanged: ``basic_ack`` is still called only after the task finished (acks
late), so no message is deleted earlier than before, only up to one interval later. The
delivery is released (its prefetch slot freed) at once, exactly as kombu does after its
DeleteMessage. A call that fails (refused, reset, timed out, throttled, 5xx) and an entry SQS
failed on its side are retried with backoff (0.25 s doubling, at most 2 s) for as long as the
receipt handle can still delete the message: ``ack_retry_seconds`` (transport option; default
three visibility-heartbeat intervals, how long an acknowledged message stays invisible once the
heartbeat stops renewing it), or the queue's VisibilityTimeout if that is longer (transport
option ``visibility_timeouts``, queue name to seconds: a message acked before its first
heartbeat renewal stays invisible that long, and a reports queue's is 930 s). After that the
message is left to SQS, which redelivers it, and its idempotency claim absorbs the duplicate.
An outage is logged when its first ack fails and when acks are given up, not once per call. An
entry refused for the caller's fault (an invalid handle) is not retried.

A claim-checked message (body in S3) is still deleted synchronously: ``taskapp.sqs.delivery``
deletes its S3 object right after ``basic_ack`` returns, and the object must outlive the
message, or a failed delete would leave a redelivered pointer to nothing.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger
from kombu.transport import SQS

from taskapp.sqs.claimcheck import pointer_of
from taskapp.sqs.kombu_channel import ChannelMixin
from taskapp.sqs.plumbing import BATCH

__all__ = ["AckBatchMixin", "AckBatcher", "DEFAULT_ACK_FLUSH_INTERVAL"]

logger = get_logger(__name__)

#: Longest wait, in seconds, between an ack and its DeleteMessageBatch.
DEFAULT_ACK_FLUSH_INTERVAL = 0.1
#: Seconds a closing channel waits for the flusher's in-flight call.
CLOSE_TIMEOUT = 10.0
#: First wait, in seconds, before a failed ack is sent again; doubled per attempt up to the cap.
FIRST_RETRY = 0.25
MAX_RETRY = 2.0


@dataclass
class _Ack:
    """One acknowledged message waiting for its DeleteMessageBatch."""

    queue: str | None  # SQS queue name (selects the client of a predefined queue)
    url: str
    handle: str
    queued_at: float
    expires: float = float("inf")  # when the receipt handle stops being worth retrying
    attempts: int = 0
    retry_at: float = 0.0


class AckBatcher:
    """Receipt handles waiting for deletion, and the thread that deletes them in batches."""

    def __init__(
        self, client: Callable[[str | None], Any], interval: float, lifetime: float = 30.0
    ) -> None:
        self._client = client
        self.interval = interval
        self.lifetime = lifetime
        self._cond = threading.Condition()
        self._pending: list[_Ack] = []
        self._retry: list[_Ack] = []  # failed acks waiting for their retry_at
        self._failing = False  # in an outage (logged once when it starts)
        self._thread: threading.Thread | None = None
        self._closed = False
        _LIVE.add(self)

    def add(self, queue: str | None, url: str, handle: str, lifetime: float = 0.0) -> None:
        """Queue one acknowledged message for deletion, retried for ``lifetime`` seconds if
        that is longer than the batcher's own."""
        with self._cond:
            now = time.monotonic()
            expires = now + max(self.lifetime, lifetime)
            self._pending.append(_Ack(queue, url, handle, now, expires))
            if self._closed:
                pass  # a late ack on a closing channel: flushed by close()
            elif self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskapp-ack-flusher", daemon=True
                )
                self._thread.start()
            elif len(self._pending) in (1, BATCH):
                self._cond.notify()  # wakes the idle flusher, or flushes a full batch now

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._promote_due()
                    if self._pending:
                        break
                    self._cond.wait(self._until_next_retry())
                if not self._pending:
                    return  # closed: close() flushes the retries left
                deadline = self._pending[0].queued_at + self.interval
                while len(self._pending) < BATCH and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, self._pending = self._pending, []
            self._delete(batch)

    def _promote_due(self) -> None:
        """Move the retries whose time has come to the pending batch (lock held)."""
        now = time.monotonic()
        due = [ack for ack in self._retry if ack.retry_at <= now]
        if due:
            self._retry = [ack for ack in self._retry if ack.retry_at > now]
            self._pending[:0] = due

    def _until_next_retry(self) -> float | None:
        if not self._retry:
            return None
        return max(min(ack.retry_at for ack in self._retry) - time.monotonic(), 0.0)

    def flush(self) -> None:
        """Delete everything queued now, retries included, in the calling thread."""
        with self._cond:
            batch, self._pending = self._retry + self._pending, []
            self._retry = []
        if batch:
            self._delete(batch)

    def close(self) -> None:
        """Flush what is queued (retries included) and stop the flusher thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(CLOSE_TIMEOUT)
        for _ in range(2):  # the first pass may queue retries
            self.flush()

    def _delete(self, acks: list[_Ack]) -> None:
        by_url: dict[str, list[_Ack]] = defaultdict(list)
        for ack in acks:
            by_url[ack.url].append(ack)
        retry: list[_Ack] = []
        for url, queued in by_url.items():
            client = self._client(queued[0].queue)
            for start in range(0, len(queued), BATCH):
                retry += self._delete_batch(client, url, queued[start : start + BATCH])
        with self._cond:
            if retry and not self._failing:
                logger.warning(
                    "could not delete %d acknowledged message(s) (%s); retrying until their "
                    "receipt handles expire",
                    len(retry),
                    retry[0].url,
                )
            self._failing = bool(retry or self._retry)
            self._retry += retry
            if retry and self._thread is not None and not self._closed:
                self._cond.notify()

    def _delete_batch(self, client: Any, url: str, acks: list[_Ack]) -> list[_Ack]:
        """Delete ``acks`` from ``url`` in one call; return the ones to try again."""
        entries = [{"Id": str(i), "ReceiptHandle": a.handle} for i, a in enumerate(acks)]
        try:
            resp = client.delete_message_batch(QueueUrl=url, Entries=entries)
        except (ClientError, BotoCoreError, OSError) as exc:
            error = {"Code": type(exc).__name__, "Message": str(exc)}
            failed = {str(i): error for i in range(len(acks))}
        else:
            failed = {f["Id"]: f for f in resp.get("Failed", [])}
        retry, now, given_up = [], time.monotonic(), 0
        for key, failure in failed.items():
            ack = acks[int(key)]
            ack.attempts += 1
            if failure.get("SenderFault"):  # the handle itself is refused: retrying cannot help
                logger.warning(
                    "SQS refused to delete an acknowledged message from %s (%s: %s)",
                    url,
                    failure.get("Code"),
                    failure.get("Message"),
                )
            elif now < ack.expires:
                ack.retry_at = now + min(FIRST_RETRY * 2 ** (ack.attempts - 1), MAX_RETRY)
                retry.append(ack)
            else:
                given_up += 1
        if given_up:
            logger.warning(
                "gave up deleting %d acknowledged message(s) from %s (%s): their receipt "
                "handles expired; SQS redelivers them and their idempotency claims absorb it",
                given_up,
                url,
                next(iter(failed.values())).get("Code"),
            )
        return retry


_LIVE: weakref.WeakSet[AckBatcher] = weakref.WeakSet()
_CREATE_LOCK = threading.Lock()


def _forget_in_child() -> None:
    # A forked pool process inherits copies of the parent's batchers (and maybe a held lock):
    # they are the parent's to flush, never the child's.
    global _CREATE_LOCK
    _LIVE.clear()
    _CREATE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _flush_all() -> None:
    # A process that exits without closing its channels still deletes what it acknowledged.
    for batcher in list(_LIVE):
        try:
            batcher.close()
        except (ClientError, BotoCoreError, OSError, RuntimeError) as exc:
            logger.warning("ack flush at exit failed: %r", exc)


class AckBatchMixin(ChannelMixin):
    """kombu SQS ``Channel`` mixin that coalesces acknowledgements into DeleteMessageBatch.

    Put it before ``kombu.transport.SQS.Channel`` in the bases. Transport option
    ``ack_flush_interval`` (seconds, default 0.1; 0 turns batching off).
    """

    _ack_batcher: AckBatcher | None = None

    @property
    def ack_flush_interval(self) -> float:
        options = self.transport_options
        return float(options.get("ack_flush_interval", DEFAULT_ACK_FLUSH_INTERVAL))

    @property
    def ack_retry_seconds(self) -> float:
        """How long a failed ack is retried: while its receipt handle can still delete."""
        options = self.transport_options
        if options.get("ack_retry_seconds") is not None:
            return float(options["ack_retry_seconds"])
        return 3 * float(options.get("heartbeat_interval", 10))

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        try:
            info = self.qos.get(delivery_tag).delivery_info
            sqs_message, url = info["sqs_message"], info["sqs_queue"]
        except KeyError:
            super().basic_ack(delivery_tag, multiple)
            return
        if pointer_of(sqs_message) is not None or self.ack_flush_interval <= 0:
            super().basic_ack(delivery_tag, multiple)
            return
        queue = None
        if "routing_key" in info:
            queue = self.canonical_queue_name(info["routing_key"])
        visibility = self.transport_options.get("visibility_timeouts") or {}
        lifetime = float(visibility.get(info.get("routing_key"), 0))
        self._batcher().add(queue, url, sqs_message["ReceiptHandle"], lifetime)
        # Release the delivery as kombu does once its DeleteMessage returned: skip SQS.Channel's
        # basic_ack (the synchronous delete) and run the virtual channel's.
        super(SQS.Channel, self).basic_ack(delivery_tag, multiple)

    def _batcher(self) -> AckBatcher:
        with _CREATE_LOCK:  # pool threads may ack concurrently
            if self._ack_batcher is None:
                self._ack_batcher = AckBatcher(
                    self._ack_client, self.ack_flush_interval, self.ack_retry_seconds
                )
            return self._ack_batcher

    def _ack_client(self, queue: str | None) -> Any:
        return self.sqs(queue=queue)

    def flush_acks(self) -> None:
        """Delete every acknowledged message now."""
        if self._ack_batcher is not None:
            self._ack_batcher.flush()

    def close(self) -> None:
        if self._ack_batcher is not None:
            self._ack_batcher.close()
        super().close()
