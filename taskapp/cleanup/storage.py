"""Storage cleanup: expired objects under a prefix, and derived objects whose source is gone.

Listing pages through ``list_objects_v2``; deletes go out in ``delete_objects`` batches of
1,000 keys (the API's maximum).

The orphan contract (images writes it, cleanup reads it): every derived object, such as an
image variant under ``thumbnails/``, carries the user metadata ``source-key`` (the
``x-amz-meta-source-key`` header) holding the key of its source in the same bucket. A derived
object older than the rule's grace period whose source key no longer exists is deleted.
Objects without the header are left alone: cleanup never guesses what something came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from time import perf_counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from taskapp.aws.s3 import classify
from taskapp.cleanup.purge import StepResult
from taskapp.cleanup.rules import RuleError, StorageRule
from taskapp.errors import RetryableError

__all__ = ["DELETE_BATCH", "apply_storage_rule", "list_objects", "delete_keys"]

log = logging.getLogger(__name__)

DELETE_BATCH = 1000


def apply_storage_rule(
    s3: Any, bucket: str, rule: StorageRule, now: datetime, *, dry_run: bool = False
) -> StepResult:
    """Delete (dry: count) the objects ``rule`` selects in ``bucket`` at ``now``."""
    action = "expire" if rule.max_age is not None else "remove orphaned"
    result = StepResult("storage", ("would " if dry_run else "") + action, unit="objects")
    started = perf_counter()
    with _s3_errors(rule):
        if rule.max_age is not None:
            keys = _expired(s3, bucket, rule.prefix, now - rule.max_age)
        else:
            keys = _orphans(s3, bucket, rule, now - rule.min_age)
        if dry_run:
            result.count = sum(1 for _ in keys)
        else:
            result.count, result.batches = delete_keys(s3, bucket, keys)
    result.duration_s = round(perf_counter() - started, 4)
    log.info(
        "cleanup.storage rule=%s prefix=%s action=%s objects=%d seconds=%.3f",
        rule.name,
        rule.prefix,
        result.action,
        result.count,
        result.duration_s,
    )
    return result


def list_objects(
    s3: Any, bucket: str, prefix: str, page_size: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every object under ``prefix``, one ``list_objects_v2`` page at a time."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        yield from page.get("Contents", [])


def delete_keys(
    s3: Any, bucket: str, keys: Iterable[str], batch_size: int = DELETE_BATCH
) -> tuple[int, int]:
    """Delete ``keys`` in batches of 1,000; return (objects deleted, requests made)."""
    deleted = requests = failed = 0
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == batch_size:
            deleted, failed = _delete(s3, bucket, batch, deleted, failed)
            requests, batch = requests + 1, []
    if batch:
        deleted, failed = _delete(s3, bucket, batch, deleted, failed)
        requests += 1
    if failed:
        # Deleting is idempotent: the retried run deletes what is left.
        raise RetryableError(f"S3 refused to delete {failed} object(s) in {bucket}")
    return deleted, requests


def _delete(s3: Any, bucket: str, keys: list[str], deleted: int, failed: int) -> tuple[int, int]:
    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    errors = resp.get("Errors", [])
    for error in errors[:3]:
        log.warning("cleanup.s3_delete_failed key=%s code=%s", error["Key"], error.get("Code"))
    return deleted + len(keys) - len(errors), failed + len(errors)


def _expired(s3: Any, bucket: str, prefix: str, cutoff: datetime) -> Iterator[str]:
    for obj in list_objects(s3, bucket, prefix):
        if obj["LastModified"] < cutoff:
            yield obj["Key"]


def _orphans(s3: Any, bucket: str, rule: StorageRule, cutoff: datetime) -> Iterator[str]:
    assert rule.orphaned_by is not None
    sources: dict[str, bool] = {}  # several variants share one source: ask once
    for obj in list_objects(s3, bucket, rule.prefix):
        if obj["LastModified"] >= cutoff:
            continue
        meta = _head(s3, bucket, obj["Key"])
        source = None if meta is None else meta.get(rule.orphaned_by)
        if not source:
            continue
        if source not in sources:
            sources[source] = _head(s3, bucket, source) is not None
        if not sources[source]:
            yield obj["Key"]


def _head(s3: Any, bucket: str, key: str) -> dict[str, str] | None:
    """The object's user metadata, or ``None`` when it does not exist."""
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}))
    except ClientError as exc:
        if classify(exc) == "missing":
            return None
        raise


@contextmanager
def _s3_errors(rule: StorageRule) -> Iterator[None]:
    """S3 errors as our two kinds (:func:`taskapp.aws.s3.classify`): only throttling, S3's own
    trouble and the network are retried; a missing bucket or denied access will not fix itself."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if classify(exc) != "retryable":
            raise RuleError(rule.name, f"S3 refused: {code}") from exc
        raise RetryableError(f"storage rule {rule.name!r}: S3 error {code}") from exc
    except BotoCoreError as exc:
        raise RetryableError(f"storage rule {rule.name!r}: S3 unreachable") from exc
