"""S3 plumbing shared by the claim check and the application: the bucket, and what a failed
call means (taskapp re-exports it as ``taskapp.aws.s3``).

:func:`classify` is the one reading of an S3 error. Each family turns its answer into its own
errors at its boundary (images: ``SourceNotFound``/``SourceUnavailable``; reports and cleanup:
``RetryableError``/``PermanentError``), so they cannot disagree about which codes are worth a
retry. Anything not known to be transient is permanent: retrying a refusal (a bad key, a
denied action, a wrong signature) only delays the dead letter.
"""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "BUCKET_MISSING_CODES",
    "MISSING_CODES",
    "RETRYABLE_CODES",
    "S3Failure",
    "bucket_is_missing",
    "classify",
    "ensure_bucket",
]

#: A key (or object) that does not exist. ``NoSuchBucket`` is not one: it is a broken setup.
MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
#: Codes of failures that pass by themselves (throttling, timeouts, S3's own trouble).
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
S3Failure = Literal["missing", "retryable", "permanent"]


def classify(exc: BaseException) -> S3Failure:
    """What a failed S3 call means: the object is ``missing``, a retry may pass
    (``retryable``: throttling, a 5xx, the network), or it will not (``permanent``)."""
    if not isinstance(exc, ClientError):
        # Connection refused, timeouts, a stream cut short: botocore's own errors and OSError.
        return "retryable" if isinstance(exc, BotoCoreError | OSError) else "permanent"
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in MISSING_CODES or (status == 404 and code != "NoSuchBucket"):
        return "missing"
    if code in RETRYABLE_CODES or status >= 500:
        return "retryable"
    return "permanent"


#: Error codes of HeadBucket (or any call) on a bucket that does not exist.
BUCKET_MISSING_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})


def bucket_is_missing(exc: ClientError) -> bool:
    """Whether ``exc`` says the bucket does not exist (a 403 says nothing about that)."""
    return str(exc.response.get("Error", {}).get("Code")) in BUCKET_MISSING_CODES


def ensure_bucket(s3: Any, bucket: str) -> bool:
    """Create ``bucket`` unless it exists; return whether it was created."""
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if not bucket_is_missing(exc):
            raise
    region = s3.meta.region_name
    extra = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    s3.create_bucket(Bucket=bucket, **extra)
    return True
