"""Image tasks: the Celery-facing edge. The work lives in taskapp.images.service.

``images.process_upload`` is the fan-out for one uploaded image: a chord whose header (a group)
runs ``images.thumbnails`` and ``images.analyze`` in parallel and whose callback,
``images.record_upload``, stores both results in the ``image_uploads`` table. If either member
fails for good, the chord's error callback ``images.record_upload_failure`` marks the row failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import chord, group
from kombu.exceptions import OperationalError

from taskapp.app import app
from taskapp.errors import RetryableError
from taskapp.images import records, service
from taskapp.retry import retry_policy

__all__ = ["make_thumbnails", "analyze", "process_upload", "record_upload", "record_upload_failure"]


@app.task(
    name="images.thumbnails",
    soft_time_limit=60,
    time_limit=90,
    **retry_policy(backoff=2, backoff_max=120, max_retries=5),
)
def make_thumbnails(
    source: str,
    sizes: Sequence[int] = service.DEFAULT_SIZES,
    formats: Sequence[str] = service.DEFAULT_FORMATS,
) -> dict[str, Any]:
    """Fit ``source`` (S3 key or http(s) URL) in NxN boxes, in each format; return the manifest."""
    return service.make_thumbnails(service.ThumbnailRequest.build(source, sizes, formats))


@app.task(
    name="images.analyze",
    soft_time_limit=30,
    time_limit=45,
    **retry_policy(backoff=2, backoff_max=120, max_retries=5),
)
def analyze(source: str) -> dict[str, Any]:
    """Dimensions, format, EXIF summary (no GPS), dominant colour and perceptual hashes."""
    return service.analyze_source(source)


@app.task(
    name="images.process_upload",
    soft_time_limit=15,
    time_limit=30,
    **retry_policy(backoff=2, backoff_max=120, max_retries=5),
)
def process_upload(key: str) -> dict[str, Any]:
    """Start thumbnails + analysis of an uploaded key as one group; the row records the outcome."""
    callback = record_upload.s(key=key).on_error(record_upload_failure.s(key=key))
    callback.freeze()
    records.mark_pending(key, callback.id)  # before the work starts: the poller sees "pending"
    try:
        result = chord(group(make_thumbnails.si(key), analyze.si(key)))(callback)
    except OperationalError as exc:  # the broker refused the publish: try the fan-out again
        raise RetryableError(f"could not start processing {key!r}: {exc}") from None
    return {"key": key, "status": records.PENDING, "result_id": result.id}


@app.task(
    name="images.record_upload",
    soft_time_limit=15,
    time_limit=30,
    **retry_policy(backoff=2, backoff_max=120, max_retries=5),
)
def record_upload(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Chord callback: store the manifest and analysis of ``key`` as done."""
    manifest, analysis = results
    records.mark_done(key, manifest, analysis)
    return {"key": key, "status": records.DONE, "manifest": manifest, "analysis": analysis}


@app.task(
    name="images.record_upload_failure",
    soft_time_limit=15,
    time_limit=30,
    **retry_policy(backoff=2, backoff_max=120, max_retries=5),
)
def record_upload_failure(request: Any, exc: BaseException, traceback: Any, key: str) -> None:
    """Chord error callback: mark ``key`` failed with the member's error."""
    records.mark_failed(key, f"{type(exc).__name__}: {exc}")
