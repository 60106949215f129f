"""Claim check for message bodies over the SQS size limit (kombu#279).

A body larger than ``TASKAPP_CLAIM_CHECK_THRESHOLD`` bytes is stored in S3 and the SQS message
carries a pointer instead, in the format of the Amazon SQS Extended Client Library (Java and
Python), so its peers can read our messages and we theirs:

    body:       ["software.amazon.payloadoffloading.PayloadS3Pointer",
                 {"s3BucketName": "<bucket>", "s3Key": "<key>"}]
    attribute:  ExtendedPayloadSize (Number) = size of the original body in bytes

The object is deleted once the message is acknowledged. A dead-lettered message keeps its
pointer (and the object stays) so a redrive still finds the payload.

A pointer is untrusted input: anyone who may send to the queue can write one. The worker reads
(and later deletes) only objects of the configured bucket under ``KEY_PREFIX`` with a plain
name (:func:`check_pointer`), and reads at most ``TASKAPP_CLAIM_CHECK_MAX_BYTES`` of one
(:func:`fetch`). Anything else is an :class:`~taskapp.sqs.deadletter.UnacceptableMessage`,
which the worker dead-letters with the reason ``poison``.

The object of a message that completed is deleted with the message; SQS may still deliver a
duplicate of it. So the pointer also carries the idempotency record the task runs under
(``IDEMPOTENCY_ATTRIBUTE``): a duplicate whose object is gone is answered by that record
instead of the object (``taskapp/sqs/worker.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from taskapp.sqs.deadletter import UnacceptableMessage
from taskapp.sqs.s3 import MISSING_CODES

__all__ = [
    "POINTER_CLASS",
    "SIZE_ATTRIBUTE",
    "KEY_PREFIX",
    "ETA_ATTRIBUTE",
    "eta_of",
    "IDEMPOTENCY_ATTRIBUTE",
    "ForeignPointer",
    "PayloadTooLarge",
    "MissingPayload",
    "message_size",
    "pointer_of",
    "check_pointer",
    "fetch",
    "idempotency_of",
    "offloader",
]

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
KEY_PREFIX = "claim-check/"
#: Message attribute of a pointer: JSON ``{"task": <task name>, "key": <idempotency key>}``.
#: Not under ``taskapp.``: a dead letter replaces those attributes, and a redrive needs it.
IDEMPOTENCY_ATTRIBUTE = "TaskappIdempotency"
#: Message attribute of a pointer: the task's ETA header, so a worker can hop a long countdown
#: without reading the object (the body it would read the ETA from is in S3).
ETA_ATTRIBUTE = "TaskappEta"
#: Largest claim-check object a worker reads (transport option ``claim_check_max_bytes``).
MAX_FETCH_BYTES = 64 * 2**20

# One path segment of plain characters after the prefix: what ``offloader`` writes (a UUID).
_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


class ForeignPointer(UnacceptableMessage):
    """A pointer to another bucket, or to a key outside the claim-check prefix."""


class PayloadTooLarge(UnacceptableMessage):
    """A pointer to an object larger than ``TASKAPP_CLAIM_CHECK_MAX_BYTES``."""


class MissingPayload(UnacceptableMessage):
    """A pointer to an object that does not exist (never written, or deleted after its message
    completed: then this delivery is a duplicate, see ``IDEMPOTENCY_ATTRIBUTE``)."""


def message_size(body: str, attributes: Mapping[str, Any] | None) -> int:
    """Bytes SQS counts against its limit: the body plus each attribute's name, type and value."""
    size = len(body.encode())
    for name, attr in (attributes or {}).items():
        value = attr.get("StringValue") or attr.get("BinaryValue") or ""
        size += len(name.encode()) + len(attr.get("DataType", "").encode())
        size += len(value) if isinstance(value, bytes) else len(value.encode())
    return size


def pointer_of(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """(bucket, key) if a received SQS message is a claim-check pointer, else None."""
    body = message.get("Body") or ""
    if not isinstance(body, str) or not body.startswith(f'["{POINTER_CLASS}"'):
        return None
    try:
        _, target = json.loads(body)
        return str(target["s3BucketName"]), str(target["s3Key"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def check_pointer(pointer: tuple[str, str], bucket: str) -> None:
    """Raise ``ForeignPointer`` unless ``pointer`` names a claim-check object of ``bucket``."""
    if pointer[0] != bucket or not _KEY.fullmatch(pointer[1]) or ".." in pointer[1]:
        raise ForeignPointer(
            f"pointer to s3://{pointer[0][:100]}/{pointer[1][:200]} is outside "
            f"s3://{bucket}/{KEY_PREFIX}"
        )


def fetch(s3: Any, pointer: tuple[str, str], max_bytes: int) -> str:
    """The text of a claim-check object, read up to ``max_bytes`` (checked pointers only).

    Raises ``MissingPayload``, ``PayloadTooLarge``, ``UnicodeDecodeError``; any other S3 error
    (throttling, an outage) propagates unchanged: it says nothing about the message.
    """
    bucket, key = pointer
    try:
        resp = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:  # S3 says so only to s3:ListBucket; to others, 403
            raise MissingPayload(
                f"claim-check object s3://{bucket}/{key} is gone ({code})"
            ) from exc
        raise
    stream = resp["Body"]
    try:
        size = resp.get("ContentLength")
        if size is None or size <= max_bytes:
            data: bytes = stream.read(max_bytes + 1)  # ContentLength is a claim; count what arrives
            size = len(data)
    finally:
        stream.close()
    if size > max_bytes:
        raise PayloadTooLarge(
            f"claim-check object s3://{bucket}/{key} has {size} bytes, over the "
            f"{max_bytes}-byte cap (TASKAPP_CLAIM_CHECK_MAX_BYTES)"
        )
    return data.decode("utf-8")


def idempotency_of(body: str) -> dict[str, str] | None:
    """``{"task", "key"}`` of the idempotency record a Celery task message runs under, if legible.

    The key is chosen as ``TaskappTask.idempotency_key`` chooses it: the ``idempotency_key``
    header, else an ``idempotency_key`` keyword argument (JSON bodies only), else the task id.
    """
    try:
        envelope = json.loads(_unbase64(body))
        headers = envelope["headers"]
        task = headers["task"]
        key = headers.get("idempotency_key") or _kwargs_key(envelope) or headers["id"]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if not isinstance(task, str) or not isinstance(key, str | int):
        return None
    return {"task": task, "key": str(key)}


def eta_of(body: str) -> str | None:
    """The ``eta`` header of a Celery task message, if it has one (ISO 8601 text)."""
    try:
        eta = json.loads(_unbase64(body))["headers"].get("eta")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return eta if isinstance(eta, str) and eta else None


def _unbase64(body: str) -> str:
    """kombu base64-encodes SQS bodies (``sqs_base64_encoding``); a JSON body is left as is."""
    if body.lstrip().startswith("{"):
        return body
    try:
        return base64.b64decode(body, validate=True).decode()
    except (binascii.Error, ValueError):
        return body


def _kwargs_key(envelope: dict[str, Any]) -> Any:
    if envelope.get("content-type") != "application/json":
        return None  # a signed (or other) body: its kwargs are not ours to parse here
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    _, kwargs, _ = json.loads(body)
    return kwargs.get("idempotency_key")


def offloader(s3: Callable[[], Any], bucket: str, threshold: int) -> Callable[..., None]:
    """A botocore ``before-parameter-build.sqs.SendMessage`` handler that offloads big bodies."""

    def offload(params: dict[str, Any], **_: Any) -> None:
        body = params.get("MessageBody", "")
        attributes = params.get("MessageAttributes") or {}
        if SIZE_ATTRIBUTE in attributes or message_size(body, attributes) <= threshold:
            return
        key = f"{KEY_PREFIX}{uuid.uuid4()}"
        data = body.encode()
        s3().put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
        params["MessageBody"] = json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])
        attributes = {
            **attributes,
            SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(len(data))},
        }
        identity = idempotency_of(body)
        if identity is not None:
            attributes[IDEMPOTENCY_ATTRIBUTE] = {
                "DataType": "String",
                "StringValue": json.dumps(identity),
            }
        eta = eta_of(body)
        if eta is not None:
            attributes[ETA_ATTRIBUTE] = {"DataType": "String", "StringValue": eta}
        params["MessageAttributes"] = attributes

    return offload
