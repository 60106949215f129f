"""Waiting for a condition or a task's result, and saying what was awaited when the wait gives up.

:func:`wait_for` is the one polling loop of the suite: it waits for a condition (never a fixed
time), returns the first truthy value and, on timeout, fails with what it waited for.

A bare ``AsyncResult.get(timeout=...)`` that times out says only "The operation timed out". On
SQS that leaves every question open: did the message never arrive, is a worker holding it, is it
delayed, was it dead-lettered, and why? :func:`result_or_whereabouts` waits as ``get`` does and,
on timeout, fails with an ``AssertionError`` that answers them:

* the result's state in the result backend;
* the queue's and its DLQ's visible, in-flight (not visible) and delayed counts;
* any DLQ message of this task, with its dead-letter reason attributes;
* whether this process's session worker holds it (reserved, or running);
* the task's idempotency claim (running with a live lease, done, or none).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery.exceptions import TimeoutError as ResultTimeout

__all__ = ["result_or_whereabouts", "wait_for", "whereabouts"]

T = TypeVar("T")

COUNTS = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


def wait_for(check: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy and return that; after ``timeout``
    seconds fail with an ``AssertionError`` naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {value!r})"
            )
        time.sleep(interval)


def result_or_whereabouts(
    result: Any,
    sqs: Any = None,
    queue: str = "default",
    timeout: float = 30.0,
    *,
    prefix: str | None = None,
    interval: float = 0.05,
    propagate: bool = True,
) -> Any:
    """``result.get()``; on timeout an ``AssertionError`` that says where the message is.

    ``queue`` is the queue's name without the session prefix (``prefix``, by default the
    settings' ``queue_prefix``); its DLQ is looked at too, and so is every other queue under the
    prefix that holds messages. ``sqs`` defaults to a client from the settings.
    """
    try:
        return result.get(timeout=timeout, interval=interval, propagate=propagate)
    except ResultTimeout:
        pass
    raise AssertionError(
        f"no result after {timeout:g} s; " + whereabouts(result, sqs, queue, prefix=prefix)
    )


def whereabouts(
    result: Any, sqs: Any = None, queue: str = "default", *, prefix: str | None = None
) -> str:
    """One paragraph: the result's state and where the task's message is, as far as can be seen."""
    from taskapp.queues import dlq_name, is_dlq

    if sqs is None or prefix is None:
        from config.settings import load_settings

        settings = load_settings()
        if sqs is None:
            from taskapp.aws import client

            sqs = client("sqs", settings)
        prefix = settings.queue_prefix if prefix is None else prefix
    lines = [f"task {result.id}: state {_state(result)}"]
    named = (prefix + queue, prefix + dlq_name(queue))
    for name in named:
        lines.append(f"{name.removeprefix(prefix)}: {_counts(sqs, name)}")
    dlqs = [named[1]]
    for url in _urls_under(sqs, prefix):
        name = url.rsplit("/", 1)[1]
        counts = _counts(sqs, name)
        if name not in named and any(not part.startswith("0 ") for part in counts.split(", ")):
            lines.append(f"elsewhere, {name.removeprefix(prefix)}: {counts}")
            if is_dlq(name):
                dlqs.append(name)
    for name in dlqs:
        found = _dead_letters(sqs, name, result.id)
        if name == named[1] or not found.startswith("no "):
            lines.append(f"in {name.removeprefix(prefix)}: {found}")
    lines.append(f"session worker: {_worker_holds(result.id)}")
    lines.append(f"idempotency claim: {_claim(result.id)}")
    return "\n  ".join(lines)


def _urls_under(sqs: Any, prefix: str) -> list[str]:
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix)
    return [url for page in pages for url in page.get("QueueUrls", [])]


def _state(result: Any) -> str:
    try:
        return str(result.state)
    except Exception as exc:  # the backend itself may be what is broken: say so, keep going
        return f"unknown ({type(exc).__name__}: {exc})"


def _url(sqs: Any, name: str) -> str | None:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        return None


def _counts(sqs: Any, name: str) -> str:
    url = _url(sqs, name)
    if url is None:
        return "no such queue"
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(COUNTS))["Attributes"]
    return ", ".join(f"{attributes.get(key, '?')} {label}" for key, label in COUNTS.items())


def _dead_letters(sqs: Any, name: str, task_id: str, rounds: int = 5) -> str:
    """This task's messages in the DLQ (peeked: left visible), with their reason attributes."""
    from taskapp.sqs.deadletter import read_reason

    url = _url(sqs, name)
    if url is None:
        return "no such queue"
    found: dict[str, str] = {}
    for _ in range(rounds):
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,  # a peek: the DLQ's readers (tests, redrive) still see it
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        for message in batch:
            if task_id in (_task_id(message["Body"]), _attribute(message, "taskapp.task_id")):
                reason = read_reason(message.get("MessageAttributes") or {})
                found[message["MessageId"]] = _reason(reason)
        if not batch:
            break
    if not found:
        return "no message of this task"
    return "; ".join(f"message {mid}: {why}" for mid, why in found.items())


def _reason(letter: Any) -> str:
    if letter is None:
        return "no reason attributes"
    source = f", from {letter.source_queue}" if letter.source_queue else ""
    return (
        f"reason={letter.reason} {letter.error_type}: {letter.error_message}"
        f" (attempts {letter.attempts}{source})"
    )


def _task_id(body: str) -> str | None:
    """The task id in an SQS body (kombu's base64 or plain JSON envelope), if it has one."""
    try:
        text = body if body.lstrip().startswith(("{", "[")) else base64.b64decode(body).decode()
        envelope = json.loads(text)
        return str(envelope["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return None


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = (message.get("MessageAttributes") or {}).get(name) or {}
    return value.get("StringValue")


def _worker_holds(task_id: str) -> str:
    from celery.worker import state

    if any(r.id == task_id for r in list(state.active_requests)):
        return "running it"
    for request in list(state.reserved_requests):
        if request.id == task_id:
            return f"holds it unstarted (eta {request.eta})"
    return "does not hold it"


def _claim(task_id: str) -> str:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from taskapp.db import engine
    from taskapp.idempotency import idempotency_keys as keys

    try:
        with engine().connect() as conn:
            rows = conn.execute(
                select(keys.c.key, keys.c.state, keys.c.lease_until).where(
                    keys.c.key.endswith(f":{task_id}")
                )
            ).all()
    except SQLAlchemyError as exc:
        return f"unknown ({type(exc).__name__})"
    if not rows:
        return "none under the task id"
    now = time.time()
    return "; ".join(f"{row.key} {row.state}, lease {row.lease_until - now:+.1f} s" for row in rows)
