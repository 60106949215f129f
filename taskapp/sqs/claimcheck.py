"""Claim check for message bodies over the SQS size limit (kombu#279).

A body larger than ``TASKAPP_CLAIM_CHECK_THRESHOLD`` bytes is stored in S3 and the SQS message
carries a pointer instead, in the format of the Amazon SQS Extended Client Library (Java and
Python), so its peers can read our messages and we theirs:

    body:       ["software.amazon.payloadoffloading.PayloadS3Pointer",
                 {"s3BucketName": "<bucket>", "s3Key": "<key>"}]
    attribute:  ExtendedPayloadSize (Number) = size of the original body in bytes

The object is deleted once the message is acknowledged. A dead-lettered message keeps its
pointer (and the object stays) so a redrive still finds the payload.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "POINTER_CLASS",
    "SIZE_ATTRIBUTE",
    "message_size",
    "pointer_of",
    "offloader",
]

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
KEY_PREFIX = "claim-check/"


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
    if not body.startswith(f'["{POINTER_CLASS}"'):
        return None
    try:
        _, target = json.loads(body)
        return str(target["s3BucketName"]), str(target["s3Key"])
    except (ValueError, KeyError, TypeError):
        return None


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
        params["MessageAttributes"] = {
            **attributes,
            SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(len(data))},
        }

    return offload
