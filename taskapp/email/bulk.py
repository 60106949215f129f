"""Plan an ``email.send_bulk``: recipients in chunks, each chunk scheduled to keep a send rate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskapp.email.compose import subject_for
from taskapp.email.errors import EmailInputError, NoRecipients
from taskapp.email.request import EmailRequest, parse_address
from taskapp.email.templates import render

__all__ = ["BulkRecipient", "Chunk", "prepare", "parse_recipients", "plan"]

#: Largest list one ``email.send_bulk`` call takes; a bigger list belongs in several calls
#: (each recipient is one SQS SendMessage, and all of them must fit in the task's time limit).
MAX_BULK_RECIPIENTS = 2_000
#: The ``email.send`` options a bulk send passes through to every email.
BULK_OPTIONS = frozenset(
    {"body", "html", "template", "context", "cc", "bcc", "reply_to", "attachments", "headers"}
)


@dataclass(frozen=True)
class BulkRecipient:
    """One recipient of a bulk send, with the context values that are theirs alone."""

    index: int
    to: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """Recipients that are enqueued together, ``countdown`` seconds after the bulk task ran."""

    recipients: tuple[BulkRecipient, ...]
    countdown: float


def prepare(
    recipients: object, subject: str | None, options: dict[str, Any]
) -> tuple[list[BulkRecipient], dict[str, Any], dict[str, Any]]:
    """Check a bulk send once, up front: (recipients, shared context, per-email options).

    The first recipient's email is built and its template rendered, so a bad argument fails
    the bulk task instead of every one of its emails.
    """
    unknown = set(options) - BULK_OPTIONS
    if unknown:
        raise EmailInputError.at("options", f"email.send_bulk does not take {sorted(unknown)}")
    people = parse_recipients(recipients)
    rest = dict(options)
    shared = dict(rest.pop("context", None) or {})
    first = {**shared, **people[0].context}
    request = EmailRequest.build(people[0].to, subject, context=first, **rest)
    if request.template:
        subject_for(request, render(request.template, first))  # a header-safe subject
    return people, shared, rest


def parse_recipients(raw: object) -> list[BulkRecipient]:
    """``["a@x.org", {"to": "b@x.org", "context": {...}}, ...]``, each address checked."""
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        raise EmailInputError.at("recipients", "expected a list")
    if not raw:
        raise NoRecipients.at("recipients", "the list is empty")
    if len(raw) > MAX_BULK_RECIPIENTS:
        raise EmailInputError.at(
            "recipients", f"{len(raw)} is over {MAX_BULK_RECIPIENTS}; split the list"
        )
    parsed = []
    for index, entry in enumerate(raw):
        where = f"recipients[{index}]"
        to: object = entry
        context: Mapping[str, Any] = {}
        if isinstance(entry, Mapping):
            to, context = entry.get("to"), entry.get("context") or {}
            if not isinstance(context, Mapping):
                raise EmailInputError.at(f"{where}.context", "expected an object")
        parse_address(where, to)
        parsed.append(BulkRecipient(index, str(to), dict(context)))
    return parsed


def plan(
    recipients: list[BulkRecipient], rate: float, chunk_size: int | None = None
) -> list[Chunk]:
    """Chunks of ``chunk_size`` (default: one second's worth) spaced to average ``rate``/s."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    size = chunk_size or max(1, math.floor(rate))
    return [
        Chunk(tuple(recipients[start : start + size]), start / rate)
        for start in range(0, len(recipients), size)
    ]
