"""Attachment bytes: decoded from small inline base64, or read from the app's S3 bucket.

The size limit is checked before anything large is read: S3 objects by ``HeadObject``, inline
content by its encoded length.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from taskapp.email.errors import AttachmentError, AttachmentTooLarge, DeliveryDeferred
from taskapp.email.request import AttachmentSpec

__all__ = ["Attachment", "load"]


@dataclass(frozen=True)
class Attachment:
    """An attachment ready to add to a message."""

    filename: str
    content_type: str
    data: bytes


def load(
    specs: tuple[AttachmentSpec, ...], *, bucket: str, max_bytes: int, s3: Any
) -> list[Attachment]:
    """The bytes of every attachment; ``s3`` is a boto3 S3 client (used only for ``s3_key``)."""
    return [
        _load_one(f"attachments[{i}]", spec, bucket, max_bytes, s3) for i, spec in enumerate(specs)
    ]


def _load_one(where: str, spec: AttachmentSpec, bucket: str, max_bytes: int, s3: Any) -> Attachment:
    if spec.content is not None:
        data = _decode(where, spec.content, max_bytes)
    else:
        data = _read_s3(where, bucket, str(spec.s3_key), max_bytes, s3)
    content_type = spec.content_type or mimetypes.guess_type(spec.filename)[0]
    return Attachment(spec.filename, content_type or "application/octet-stream", data)


def _too_large(where: str, size: int, max_bytes: int) -> AttachmentTooLarge:
    return AttachmentTooLarge.at(where, f"{size} bytes is over the limit of {max_bytes} bytes")


def _decode(where: str, content: str, max_bytes: int) -> bytes:
    if len(content) * 3 // 4 > max_bytes + 2:  # cheap upper bound before decoding
        raise _too_large(where, len(content) * 3 // 4, max_bytes)
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError.at(f"{where}.content", "is not valid base64") from None
    if len(data) > max_bytes:
        raise _too_large(where, len(data), max_bytes)
    return data


def _read_s3(where: str, bucket: str, key: str, max_bytes: int, s3: Any) -> bytes:
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        if size > max_bytes:
            raise _too_large(where, size, max_bytes)
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read(max_bytes + 1))
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            raise AttachmentError.at(
                f"{where}.s3_key", f"s3://{bucket}/{key} does not exist"
            ) from None
        if status in {401, 403}:
            raise AttachmentError.at(
                f"{where}.s3_key", f"access denied to s3://{bucket}/{key}"
            ) from None
        raise DeliveryDeferred(f"{where}: reading s3://{bucket}/{key} failed: {code}") from None
    except BotoCoreError as exc:
        raise DeliveryDeferred(f"{where}: reading s3://{bucket}/{key} failed: {exc}") from None
