"""Redrive: move dead letters back to their source queue (``taskapp dlq redrive``).

Without filters it asks SQS to do it (``StartMessageMoveTask``); endpoints without that API
(moto), and redrives filtered by task name or limited in count, move messages themselves, a
batch at a time: send the batch to the source queue, then delete what was sent from the DLQ. A
batch is never cut in half by Ctrl-C (the interrupt is honoured between batches), and a message
is deleted from the DLQ only after SQS accepted its copy, so an interruption loses nothing.
Only a hard kill between the two calls can leave a message in both queues; tasks are
idempotent by id (``taskapp.idempotency``).

Moving them ourselves follows SQS's rules for ``SendMessageBatch``:

* A call holds at most 10 messages and 1 MiB in total, counted as SQS counts (body plus each
  attribute's name, type and value: ``claimcheck.message_size``). Two dead letters of 600 KB
  go in two calls; a message near 1 MiB goes alone.
* A FIFO queue needs each message's group and deduplication id. They are the dead letter's
  own (received with its system attributes). Reusing the deduplication id is safe: SQS, and
  our dead-lettering, replace it with the original message's id when a message enters a FIFO
  DLQ, so it differs from the id the producer sent with and the source queue does not drop the
  copy as a duplicate of the original; a redrive repeated within five minutes after a crash
  between send and delete is dropped, as the duplicate it is.
* A message SQS refuses (too big for the source queue's ``MaximumMessageSize``, say) stays in
  the DLQ and is reported; if SQS refuses a whole call, each of its messages is tried alone,
  so one bad message does not hold back the others. Every message received and not moved is
  made visible again (visibility 0) before the redrive returns or raises: none waits out
  ``MOVE_VISIBILITY``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from taskapp.sqs.admin.dlq import describe, queue_url, receive, release
from taskapp.sqs.admin.environment import Environment
from taskapp.sqs.boto import client_for
from taskapp.sqs.claimcheck import message_size
from taskapp.sqs.deadletter import ATTRIBUTE_PREFIX
from taskapp.sqs.naming import FIFO_SUFFIX, dlq_name, source_of
from taskapp.sqs.plumbing import BATCH, MAX_MESSAGE_BYTES

__all__ = [
    "BATCH_MAX_BYTES",
    "BATCH_MAX_ENTRIES",
    "RedriveFailure",
    "RedriveResult",
    "batches_by_size",
    "redrive",
]

#: Seconds a batch being moved stays invisible to others (a batch takes milliseconds).
MOVE_VISIBILITY = 60
#: SendMessageBatch limits: entries per call, and bytes per call (and per message).
BATCH_MAX_ENTRIES = BATCH
BATCH_MAX_BYTES = MAX_MESSAGE_BYTES
#: Codes with which an endpoint says it has no StartMessageMoveTask.
_NO_MOVE_TASK = {"UnsupportedOperation", "InvalidAction", "NotImplemented", "500", "501"}


@dataclass(frozen=True)
class RedriveFailure:
    """A dead letter SQS would not take back: it stays in the DLQ, visible again."""

    message_id: str
    task_name: str
    code: str
    error: str


@dataclass
class RedriveResult:
    """What a redrive did: moved, left in place (filtered out or over the limit), failed."""

    moved: int = 0
    skipped: int = 0
    method: str = "receive-send-delete"
    failed: list[RedriveFailure] = field(default_factory=list)


def _attributes_to_send(message: dict[str, Any]) -> dict[str, Any]:
    # The producer's own attributes go back; the dead-letter reason stays behind.
    return {
        key: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for key, value in (message.get("MessageAttributes") or {}).items()
        if not key.startswith(ATTRIBUTE_PREFIX)
    }


def _entry(entry_id: str, message: dict[str, Any], fifo: bool) -> dict[str, Any]:
    """The SendMessageBatch entry that puts ``message`` back (FIFO: with its group and dedup id)."""
    entry = {
        "Id": entry_id,
        "MessageBody": message["Body"],
        "MessageAttributes": _attributes_to_send(message),
    }
    if fifo:
        system = message.get("Attributes") or {}
        entry["MessageGroupId"] = system.get("MessageGroupId", "default")
        entry["MessageDeduplicationId"] = system.get("MessageDeduplicationId", message["MessageId"])
    return entry


def batches_by_size(
    entries: list[dict[str, Any]],
    max_bytes: int = BATCH_MAX_BYTES,
    max_entries: int = BATCH_MAX_ENTRIES,
) -> list[list[dict[str, Any]]]:
    """Split SendMessageBatch entries, in order, into calls within SQS's count and size limits.

    An entry that would take a call over ``max_bytes`` starts the next call, so a message near
    the limit goes alone (and one over it is refused alone, not with its neighbours).
    """
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for entry in entries:
        n = message_size(entry["MessageBody"], entry.get("MessageAttributes"))
        if not batches or len(batches[-1]) >= max_entries or size + n > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += n
    return batches


def _error(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")), str(error.get("Message", exc))


def _send(sqs: Any, url: str, call: list[dict[str, Any]]) -> dict[str, tuple[str, str] | None]:
    """Send one batch; map each entry id to None (accepted) or SQS's (code, message)."""
    try:
        resp = sqs.send_message_batch(QueueUrl=url, Entries=call)
    except ClientError as exc:
        if len(call) == 1:
            return {call[0]["Id"]: _error(exc)}
        # SQS refused the whole call (an entry too big for the queue, say): one at a time, so
        # one bad message does not hold back the others.
        return {k: v for entry in call for k, v in _send(sqs, url, [entry]).items()}
    outcome: dict[str, tuple[str, str] | None] = {
        e["Id"]: (str(e.get("Code", "")), str(e.get("Message", ""))) for e in resp.get("Failed", [])
    }
    outcome.update((e["Id"], None) for e in resp.get("Successful", []))
    for entry in call:  # neither accepted nor refused: it was not moved
        outcome.setdefault(entry["Id"], ("NoAnswer", "SQS did not answer for this message"))
    return outcome


def _failure(message: dict[str, Any], code: str, error: str) -> RedriveFailure:
    return RedriveFailure(message["MessageId"], describe(message).task_name, code, error)


def _move_batch(
    sqs: Any,
    source_url: str,
    dlq_url: str,
    batch: list[dict[str, Any]],
    on_progress: Callable[[int], None],
) -> tuple[int, set[str], list[RedriveFailure]]:
    """Send ``batch`` to the source queue, deleting from the DLQ what SQS accepted.

    Return how many were sent, the ids of those deleted from the DLQ, and why the rest stayed.
    """
    fifo = source_url.endswith(FIFO_SUFFIX)
    by_entry = {str(i): m for i, m in enumerate(batch)}
    entries = [_entry(i, m, fifo) for i, m in by_entry.items()]
    sent, deleted, failures = 0, set(), []
    for call in batches_by_size(entries):
        outcome = _send(sqs, source_url, call)
        ok = [i for i, why in outcome.items() if why is None]
        failures += [_failure(by_entry[i], *why) for i, why in outcome.items() if why]
        if ok:
            resp = sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[{"Id": i, "ReceiptHandle": by_entry[i]["ReceiptHandle"]} for i in ok],
            )
            deleted |= {by_entry[e["Id"]]["MessageId"] for e in resp.get("Successful", [])}
            failures += [
                _failure(by_entry[e["Id"]], e.get("Code", ""), "sent, but still in the DLQ too")
                for e in resp.get("Failed", [])
            ]
        sent += len(ok)
        on_progress(len(ok))
    return sent, deleted, failures


@contextmanager
def _batches_complete() -> Iterator[Callable[[], bool]]:
    """Defer Ctrl-C to the end of the current batch; yield "was it pressed?"."""
    pressed = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        pressed.append(signum)

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: nothing to defer
        yield lambda: False
        return
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:
            raise KeyboardInterrupt


def _move_task(
    sqs: Any,
    settings: Environment,
    dlq_url: str,
    source_url: str,
    on_progress: Callable[[int], None],
) -> int:
    """Redrive with SQS's own StartMessageMoveTask; raise LookupError if unsupported."""

    def arn(url: str) -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    probe = client_for("sqs", settings, profile="once")  # one attempt: a refusal is the answer
    try:
        handle = probe.start_message_move_task(
            SourceArn=arn(dlq_url), DestinationArn=arn(source_url)
        )
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NO_MOVE_TASK or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode"
        ) in (500, 501):
            raise LookupError(code) from exc
        raise
    moved = 0
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=arn(dlq_url), MaxResults=1)["Results"]
        task = next((t for t in tasks if t.get("TaskHandle") == handle["TaskHandle"]), tasks[0])
        now = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        on_progress(now - moved)
        moved = now
        if task["Status"] in ("COMPLETED", "CANCELLED", "FAILED"):
            if task["Status"] != "COMPLETED":
                raise RuntimeError(
                    f"message move task {task['Status']}: {task.get('FailureReason')}"
                )
            return moved
        time.sleep(1)


def _moved_key(message: dict[str, Any]) -> str:
    """What a letter and its copy dead-lettered again share: the task id, else the body."""
    return describe(message).task_id or f"md5:{message.get('MD5OfBody', message['MessageId'])}"


def redrive(
    sqs: Any,
    settings: Environment,
    queue: str,
    task: str | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
) -> RedriveResult:
    """Move ``queue``'s dead letters back to ``queue`` (only task ``task``, at most ``limit``)."""
    dlq = dlq_name(queue)
    dlq_url = queue_url(sqs, settings, dlq)
    source_url = queue_url(sqs, settings, source_of(dlq))
    if task is None and limit is None:
        try:
            return RedriveResult(
                _move_task(sqs, settings, dlq_url, source_url, on_progress), 0, "sqs"
            )
        except LookupError:
            pass  # the endpoint has no StartMessageMoveTask: move them ourselves
    result = RedriveResult()
    held: dict[str, dict[str, Any]] = {}  # received and not deleted, by id: latest receipt
    failed: dict[str, RedriveFailure] = {}
    # A moved letter that fails again comes back to the DLQ as a new message while this run is
    # still receiving; moving it again would loop for as long as it keeps failing. So each task
    # (by id; a message without one, by body) moves at most once per run.
    moved_keys: set[str] = set()
    try:
        with _batches_complete() as interrupted:
            while not interrupted() and (limit is None or result.moved < limit):
                batch = receive(sqs, dlq_url, visibility=MOVE_VISIBILITY, wait=1)
                if not batch:
                    break
                held.update((m["MessageId"], m) for m in batch)
                wanted = [
                    m
                    for m in batch
                    if m["MessageId"] not in failed  # tried once in this run is enough
                    and _moved_key(m) not in moved_keys
                    and (task is None or describe(m).task_name == task)
                ]
                if limit is not None:
                    wanted = wanted[: limit - result.moved]
                if not wanted:
                    continue
                moved, deleted, failures = _move_batch(
                    sqs, source_url, dlq_url, wanted, on_progress
                )
                result.moved += moved
                moved_keys.update(_moved_key(m) for m in wanted)
                for message_id in deleted:
                    held.pop(message_id)
                failed.update((f.message_id, f) for f in failures)
    finally:
        # Messages looked at but not moved are visible again right away.
        result.failed = list(failed.values())
        result.skipped = len(held.keys() - failed.keys())
        release(sqs, dlq_url, list(held.values()))
    return result
