"""Message signing that covers what runs: the deciding headers and the signing time.

Celery's ``auth`` serializer (``TASKAPP_SIGNING_*``, ``config/celery.py``) signs the message
*body* only: ``(args, kwargs, embed)``. Which task runs, under which id, when, with which
idempotency key and on which retry are message *headers*, outside the signature. So a captured
signed body sent again under a fresh ``id`` runs twice, and with another ``task`` header it runs
another task.

What we change: before a task message is serialized (``before_task_publish``), :func:`seal`
puts a copy of its deciding headers (:data:`SIGNED_HEADERS`) and the signing time into the body's
``embed`` dict, so the signature covers them. On the worker, :func:`strategy` wraps Celery's
default task strategy: before a request is made it compares the headers with that signed copy
and checks the age (:func:`check`). A difference, a missing copy or a replay older than
``TASKAPP_SIGNING_MAX_AGE`` raises :class:`~taskapp.sqs.deadletter.UnacceptableMessage` with the
reason ``signature``, which the consumer dead-letters.

Why the embed: Celery reads it with ``embed.get(...)`` (callbacks, errbacks, chain, chord) and
merges it into the task's request context, so an extra key is ignored; it is a fresh dict per
message (``app.amqp.as_task_v2``). The context copies unknown keys into ``request.headers``, which
a retry re-publishes, so :func:`seal` drops a stale copy from the outgoing headers.

What keeps working: a retry and ``_come_back_later`` publish a new message, sealed again by the
worker. A countdown hop (``transport._hop``), a claim-checked body and a DLQ redrive carry the
same bytes and headers, so the seal still matches. The age runs from the signing time or from
the ETA, whichever is later, so a long countdown still runs when due.

Costs: with signing on, one header copy per published message and one comparison per received
one (the body is decoded for the request anyway, and kombu caches it). With signing off, the
worker's strategy is Celery's own and the publish hook returns after one setting lookup.
Limits: protocol 2 messages only (Celery's default). A redrive of a dead letter older than the
window is refused again (its body is the original, signed then); raise the window to redrive it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from celery.worker.strategy import default
from kombu.utils.json import dumps

from taskapp.sqs.deadletter import UnacceptableMessage

__all__ = ["SEAL", "SIGNED_HEADERS", "signed_copy", "seal", "check", "strategy"]

#: The embed key holding the signed copy: ``{"headers": {...}, "signed_at": <epoch seconds>}``.
SEAL = "taskapp_signed"
#: Seconds after signing (or its ETA) a signed message is accepted (``signing_max_age``).
DEFAULT_MAX_AGE = 86400

#: Headers that decide what runs, when, how long and how often. ``args``/``kwargs`` are the
#: body, signed by Celery already. ``group`` joins chords; ``timelimit`` bounds a run, and a
#: run longer than the visibility timeout is delivered again.
SIGNED_HEADERS = (
    "task",
    "id",
    "eta",
    "expires",
    "retries",
    "timelimit",
    "group",
    "idempotency_key",
    "entity",
    "entity_version",
)


def signed_copy(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The deciding headers of a task message (an absent header counts as None)."""
    return {name: headers.get(name) for name in SIGNED_HEADERS}


def seal(body: Any, headers: dict[str, Any], now: float | None = None) -> None:
    """Put the deciding headers and the signing time into a protocol 2 body's embed."""
    headers.pop(SEAL, None)  # a retry's request headers carry the previous message's copy
    embed = body[2] if isinstance(body, (tuple, list)) and len(body) == 3 else None
    if isinstance(embed, dict):
        embed[SEAL] = {
            "headers": signed_copy(headers),
            "signed_at": time.time() if now is None else now,
        }


def _canonical(value: Any) -> str:
    # Strict: 1 and True, 17 and 17.0, "1" and 1 are different headers.
    return str(dumps(value, sort_keys=True))


def _epoch(eta: Any) -> float:
    """Epoch seconds of an ETA header (ISO-8601 string; naive means UTC); 0 if none."""
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            return 0.0
    if not isinstance(eta, datetime):
        return 0.0
    try:
        return (eta if eta.tzinfo else eta.replace(tzinfo=UTC)).timestamp()
    except (OverflowError, ValueError, OSError):
        return 0.0


def _sealed(body: Any) -> tuple[dict[str, Any], float]:
    """The signed header copy and signing time of a protocol 2 body."""
    embed = body[2] if isinstance(body, (tuple, list)) and len(body) == 3 else None
    sealed = embed.get(SEAL) if isinstance(embed, dict) else None
    copy = sealed.get("headers") if isinstance(sealed, dict) else None
    signed_at = sealed.get("signed_at") if isinstance(sealed, dict) else None
    # bool is an int, and NaN compares false with any age: neither is a signing time.
    if (
        isinstance(copy, dict)
        and isinstance(signed_at, (int, float))
        and not isinstance(signed_at, bool)
        and math.isfinite(signed_at)
    ):
        return copy, float(signed_at)
    raise UnacceptableMessage("the signed body carries no copy of its headers", "signature")


def check(headers: Mapping[str, Any], body: Any, max_age: float, now: float | None = None) -> None:
    """Refuse a message whose deciding headers differ from its signed copy, or a replay
    signed (or due) more than ``max_age`` seconds ago."""
    copy, signed_at = _sealed(body)
    if _canonical(signed_copy(copy)) != _canonical(signed_copy(headers)):
        differs = [
            name
            for name in SIGNED_HEADERS
            if _canonical(copy.get(name)) != _canonical(headers.get(name))
        ]
        raise UnacceptableMessage(
            f"headers differ from the signed copy: {', '.join(differs)}", "signature"
        )
    age = (time.time() if now is None else now) - max(signed_at, _epoch(headers.get("eta")))
    if age > max_age:
        raise UnacceptableMessage(
            f"signed {age:.0f} s ago, outside the {max_age:.0f} s replay window", "signature"
        )


def strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default task strategy; with signing on, each message passes :func:`check` first."""
    handle = default(task, app, consumer, **options)
    if app.conf.task_serializer != "auth":
        return handle
    options = app.conf.broker_transport_options or {}
    max_age = float(options.get("signing_max_age", DEFAULT_MAX_AGE))

    def verified(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> Any:
        # message.payload verifies the body's signature (kombu caches the result for the
        # request); a forged or unsigned body raises DecodeError or ContentDisallowed here.
        check(message.headers or {}, message.payload, max_age)
        return handle(message, body, ack, reject, callbacks, **kw)

    return verified
