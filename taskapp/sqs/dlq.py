"""Dead-letter queues: depths, a non-consuming look inside, redrive and purge.

Every work queue ``<q>`` has a DLQ ``<q>-dlq`` (``taskapp.sqs.provision``). A message lands
there either through the queue's RedrivePolicy (``maxReceiveCount`` receives) or through
:func:`taskapp.sqs.deadletter.send_dead_letter`, which attaches why (``read_reason``).

Redrive moves messages back to their source queue. Without filters it asks SQS to do it
(``StartMessageMoveTask``); endpoints without that API (moto), and redrives filtered by task
name or limited in count, move messages themselves, a batch at a time: send the batch to the
source queue, then delete what was sent from the DLQ. A batch is never cut in half by Ctrl-C
(the interrupt is honoured between batches), and a message is deleted from the DLQ only after
SQS accepted its copy, so an interruption loses nothing. Only a hard kill between the two calls
can leave a message in both queues; tasks are idempotent by id (``taskapp.idempotency``).
"""

from __future__ import annotations

import base64
import binascii
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from config.settings import Settings
from taskapp.queues import dlq_name, is_dlq, source_of
from taskapp.sqs.deadletter import ATTRIBUTE_PREFIX, read_reason

__all__ = [
    "DeadMessage",
    "DlqDepth",
    "RedriveResult",
    "dlq_name",
    "list_dlqs",
    "peek",
    "purge",
    "redrive",
]

_DEPTH = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
#: Seconds a batch being looked at stays invisible (released right after the look).
PEEK_VISIBILITY = 30
#: Seconds a batch being moved stays invisible to others (a batch takes milliseconds).
MOVE_VISIBILITY = 60
#: Codes with which an endpoint says it has no StartMessageMoveTask.
_NO_MOVE_TASK = {"UnsupportedOperation", "InvalidAction", "NotImplemented", "500", "501"}
_PROBE = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)


def _url(sqs: Any, settings: Settings, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"])


@dataclass(frozen=True)
class DlqDepth:
    """Messages in one DLQ."""

    queue: str
    source: str
    visible: int
    in_flight: int
    delayed: int


def list_dlqs(sqs: Any, settings: Settings) -> list[DlqDepth]:
    """Depth of every DLQ of this environment (``<prefix>*-dlq``), by name."""
    resp = sqs.list_queues(QueueNamePrefix=settings.queue_prefix, MaxResults=1000)
    rows = []
    for url in sorted(resp.get("QueueUrls", [])):
        name = url.rsplit("/", 1)[-1].removeprefix(settings.queue_prefix)
        if not is_dlq(name):
            continue
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH.values()))
        counts = {k: int(attrs["Attributes"].get(a, 0)) for k, a in _DEPTH.items()}
        rows.append(DlqDepth(name, source_of(name), **counts))
    return rows


@dataclass(frozen=True)
class DeadMessage:
    """One dead letter, as ``taskapp dlq show`` prints it."""

    message_id: str
    task_name: str
    task_id: str
    args: str
    reason: str
    error: str
    attempts: int
    first_failure: datetime | None
    raw: dict[str, Any]


def _envelope(body: str) -> dict[str, Any]:
    """kombu's message envelope from an SQS body (base64 of JSON, or plain JSON)."""
    for text in (body, _b64(body)):
        if text is None:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _b64(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, ValueError):
        return None


def _timestamp(millis: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(millis) / 1000, UTC) if millis else None


def describe(message: dict[str, Any]) -> DeadMessage:
    """What a received DLQ message is: task, arguments, why it failed, when, how often."""
    headers = _envelope(message.get("Body", "")).get("headers") or {}
    letter = read_reason(message.get("MessageAttributes") or {})
    attrs = message.get("Attributes") or {}
    args = ", ".join(
        part
        for part in (headers.get("argsrepr"), headers.get("kwargsrepr"))
        if part not in (None, "()", "{}", "[]")
    )
    first = None
    if letter and letter.failed_at:
        first = datetime.fromisoformat(letter.failed_at)
    else:
        first = _timestamp(attrs.get("ApproximateFirstReceiveTimestamp"))
    return DeadMessage(
        message_id=message["MessageId"],
        task_name=(letter.task_name if letter and letter.task_name else headers.get("task", "")),
        task_id=(letter.task_id if letter and letter.task_id else headers.get("id", "")),
        args=args,
        reason=letter.reason if letter else "max-receives",
        error=f"{letter.error_type}: {letter.error_message}" if letter else "",
        attempts=letter.attempts if letter else int(attrs.get("ApproximateReceiveCount", 0)),
        first_failure=first,
        raw=message,
    )


def _receive(sqs: Any, url: str, visibility: int, wait: int = 0) -> list[dict[str, Any]]:
    resp = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )
    return list(resp.get("Messages", []))


def peek(sqs: Any, settings: Settings, queue: str, limit: int = 50) -> list[DeadMessage]:
    """Up to ``limit`` messages of ``queue``'s DLQ, left in place.

    Each batch is hidden for a moment so the next receive returns the following messages, and
    all of them are made visible again at the end (visibility 0). A DLQ has no redrive policy of
    its own, so receiving there moves nothing; if the look is interrupted, the messages come
    back by themselves after ``PEEK_VISIBILITY`` seconds.
    """
    url = _url(sqs, settings, dlq_name(queue))
    seen: dict[str, dict[str, Any]] = {}
    try:
        while len(seen) < limit:
            batch = [m for m in _receive(sqs, url, PEEK_VISIBILITY) if m["MessageId"] not in seen]
            if not batch:
                break
            seen.update((m["MessageId"], m) for m in batch)
    finally:
        _release(sqs, url, list(seen.values()))
    return [describe(m) for m in list(seen.values())[:limit]]


@dataclass
class RedriveResult:
    """What a redrive did."""

    moved: int = 0
    skipped: int = 0
    method: str = "receive-send-delete"


def _attributes_to_send(message: dict[str, Any]) -> dict[str, Any]:
    # The producer's own attributes go back; the dead-letter reason stays behind.
    return {
        key: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for key, value in (message.get("MessageAttributes") or {}).items()
        if not key.startswith(ATTRIBUTE_PREFIX)
    }


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


def _move_batch(
    sqs: Any, source_url: str, dlq_url: str, batch: list[dict[str, Any]]
) -> tuple[int, list[dict[str, Any]]]:
    """Send ``batch`` to the source queue, then delete what was sent; return (moved, failed)."""
    entries = [
        {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": _attributes_to_send(m)}
        for i, m in enumerate(batch)
    ]
    sent = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
    ok = {int(e["Id"]) for e in sent.get("Successful", [])}
    failed = [m for i, m in enumerate(batch) if i not in ok]
    if ok:
        sqs.delete_message_batch(
            QueueUrl=dlq_url,
            Entries=[{"Id": str(i), "ReceiptHandle": batch[i]["ReceiptHandle"]} for i in ok],
        )
    return len(ok), failed


def _release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def _move_task(sqs: Any, dlq_url: str, source_url: str, on_progress: Callable[[int], None]) -> int:
    """Redrive with SQS's own StartMessageMoveTask; raise LookupError if unsupported."""

    def arn(url: str) -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    probe = _probe_client(sqs)
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


def _probe_client(sqs: Any) -> Any:
    import boto3

    meta = sqs.meta
    return boto3.session.Session().client(
        "sqs", region_name=meta.region_name, endpoint_url=meta.endpoint_url, config=_PROBE
    )


def redrive(
    sqs: Any,
    settings: Settings,
    queue: str,
    task: str | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
) -> RedriveResult:
    """Move ``queue``'s dead letters back to ``queue`` (only task ``task``, at most ``limit``)."""
    dlq = dlq_name(queue)
    dlq_url = _url(sqs, settings, dlq)
    source_url = _url(sqs, settings, source_of(dlq))
    if task is None and limit is None:
        try:
            return RedriveResult(_move_task(sqs, dlq_url, source_url, on_progress), 0, "sqs")
        except LookupError:
            pass  # the endpoint has no StartMessageMoveTask: move them ourselves
    result = RedriveResult()
    skipped: list[dict[str, Any]] = []
    try:
        with _batches_complete() as interrupted:
            while not interrupted() and (limit is None or result.moved < limit):
                batch = _receive(sqs, dlq_url, visibility=MOVE_VISIBILITY, wait=1)
                if not batch:
                    break
                wanted = [m for m in batch if task is None or describe(m).task_name == task]
                skipped += [m for m in batch if m not in wanted]
                room = None if limit is None else limit - result.moved
                wanted, spare = wanted[:room], wanted[room:] if room is not None else []
                skipped += spare
                if not wanted:
                    continue
                moved, failed = _move_batch(sqs, source_url, dlq_url, wanted)
                result.moved += moved
                skipped += failed
                on_progress(moved)
    finally:
        # Messages looked at but not moved are visible again right away.
        result.skipped = len(skipped)
        _release(sqs, dlq_url, skipped)
    return result


def purge(sqs: Any, settings: Settings, queue: str) -> int:
    """Delete every message of ``queue``'s DLQ; return how many there were (approximately)."""
    url = _url(sqs, settings, dlq_name(queue))
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH.values()))
    count = sum(int(v) for v in attrs["Attributes"].values())
    sqs.purge_queue(QueueUrl=url)
    return count
