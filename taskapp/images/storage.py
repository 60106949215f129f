"""S3 reads and writes for images, with botocore's errors translated into ours."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    ResponseStreamingError,
)

from taskapp.aws.s3 import classify
from taskapp.errors import PermanentError, TaskappError
from taskapp.images.errors import SourceNotFound, SourceTooLarge, SourceUnavailable

__all__ = ["read_object", "put_object", "head_object", "translate"]

#: Variants are content-addressed, so a URL's bytes never change: cache them for a year.
CACHE_CONTROL = "public, max-age=31536000, immutable"
NETWORK_ERRORS = (ConnectionError, HTTPClientError, ResponseStreamingError)


def translate(exc: ClientError | Exception, what: str) -> TaskappError:
    """Our error for a failed S3 call on ``what`` (``s3://bucket/key``)."""
    if not isinstance(exc, ClientError):
        return SourceUnavailable(f"{what}: S3 unreachable ({type(exc).__name__})")
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code == "NoSuchBucket":
        return PermanentError(f"{what}: the bucket does not exist")
    kind = classify(exc)
    if kind == "missing":
        return SourceNotFound(f"{what} does not exist")
    if kind == "retryable":
        return SourceUnavailable(f"{what}: S3 answered {status} {code}")
    return PermanentError(f"{what}: S3 refused the request ({status} {code})")


def read_object(s3: Any, bucket: str, key: str, max_bytes: int) -> bytes:
    """The bytes of ``key``; refuses objects over ``max_bytes`` before reading them."""
    what = f"s3://{bucket}/{key}"
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        length = int(obj.get("ContentLength") or 0)
        if length > max_bytes:
            obj["Body"].close()
            raise SourceTooLarge(f"{what} has {length} bytes, more than the {max_bytes} allowed")
        body = obj["Body"].read(max_bytes + 1)
        obj["Body"].close()
    except (ClientError, *NETWORK_ERRORS) as exc:
        raise translate(exc, what) from None
    if len(body) > max_bytes:  # Content-Length lied, or was absent
        raise SourceTooLarge(f"{what} has more than the {max_bytes} bytes allowed")
    return bytes(body)


def put_object(
    s3: Any, bucket: str, key: str, body: bytes, content_type: str, metadata: dict[str, str]
) -> None:
    """Store one immutable variant with its content type, cache policy and metadata."""
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            CacheControl=CACHE_CONTROL,
            Metadata=metadata,
        )
    except (ClientError, *NETWORK_ERRORS) as exc:
        raise translate(exc, f"s3://{bucket}/{key}") from None


def head_object(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The HEAD response of ``key``, or None if it does not exist."""
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except (ClientError, *NETWORK_ERRORS) as exc:
        error = translate(exc, f"s3://{bucket}/{key}")
        if isinstance(error, SourceNotFound):
            return None
        raise error from None
