"""The image tasks through the real session worker on SQS and S3 (moto), with the session DB."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from config.settings import Settings
from taskapp.errors import PermanentError, RetryableError
from taskapp.images import records
from taskapp.images.errors import (
    CorruptImage,
    DecompressionBomb,
    FetchRefused,
    NotAnImage,
    SourceNotFound,
    SourceTooLarge,
    UnsupportedFormat,
)
from taskapp.images.tasks import analyze, make_thumbnails, process_upload
from tests.images import samples
from tests.images.conftest import ImageServer

pytestmark = pytest.mark.integration
WAIT = {"timeout": 60, "interval": 0.05}


def upload(s3: Any, settings: Settings, body: bytes) -> str:
    key = f"uploads/{uuid.uuid4().hex}"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=body)
    return key


def test_thumbnails_task_stores_variants_from_an_s3_key(
    worker: Any, s3: Any, settings: Settings
) -> None:
    # given an uploaded 1600x1200 photo
    key = upload(s3, settings, samples.jpeg(1600, 1200))
    # when images.thumbnails runs on the worker with the documented defaults
    manifest = make_thumbnails.delay(key).get(**WAIT)
    # then 128 and 512 px JPEG and WebP variants exist in S3 as the manifest says
    assert [(v["width"], v["height"], v["format"]) for v in manifest["variants"]] == [
        (128, 96, "jpeg"),
        (128, 96, "webp"),
        (512, 384, "jpeg"),
        (512, 384, "webp"),
    ]
    for variant in manifest["variants"]:
        head = s3.head_object(Bucket=settings.bucket, Key=variant["key"])
        assert head["ContentLength"] == variant["bytes"]
        assert head["ContentType"] == f"image/{variant['format']}"


def test_thumbnails_task_from_a_url(worker: Any, image_server: ImageServer) -> None:
    # given a GIF served by a local server that the session allowlist (127.0.0.1) permits
    url = image_server.add("/tasks/anim.gif", samples.animated_gif(), "image/gif")
    # when thumbnailed by URL as PNG
    manifest = make_thumbnails.delay(url, sizes=[60], formats=["png"]).get(**WAIT)
    # then one still PNG variant fits the box
    (variant,) = manifest["variants"]
    assert (variant["width"], variant["height"], variant["format"]) == (60, 40, "png")


def test_transient_http_error_is_retried_until_it_succeeds(
    worker: Any, image_server: ImageServer
) -> None:
    # given a URL that answers 503 once and then serves the image
    image_server.add("/tasks/flaky.png", samples.png(120, 80), "image/png")
    url = image_server.url("/flaky?fail=1&path=/tasks/flaky.png")
    # when thumbnailed; then the task retries (with backoff) and succeeds
    manifest = make_thumbnails.delay(url, sizes=[60], formats=["png"]).get(**WAIT)
    assert [(v["width"], v["height"]) for v in manifest["variants"]] == [(60, 40)]
    assert image_server.hits["/tasks/flaky.png"] == 2


def test_redelivered_task_returns_the_same_manifest(
    worker: Any, s3: Any, settings: Settings
) -> None:
    key = upload(s3, settings, samples.jpeg(800, 600))
    first = make_thumbnails.delay(key, sizes=[200], formats=["jpeg"]).get(**WAIT)
    second = make_thumbnails.delay(key, sizes=[200], formats=["jpeg"]).get(**WAIT)
    assert second == first


HOSTILE_BODIES = {
    "not-an-image": (b"just some text, not pixels", NotAnImage, "not an image"),
    "truncated-jpeg": (samples.truncated_jpeg(), CorruptImage, "truncated"),
    "decompression-bomb": (samples.bomb_png(), DecompressionBomb, "decompression bomb"),
    "unsupported-format": (samples.tiff(), UnsupportedFormat, "TIFF"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
def test_hostile_upload_fails_permanently_with_a_clear_message(
    worker: Any, s3: Any, settings: Settings, case: str
) -> None:
    body, error, message = HOSTILE_BODIES[case]
    key = upload(s3, settings, body)
    result = make_thumbnails.delay(key)
    with pytest.raises(error, match=message):
        result.get(**WAIT)
    # and the worker is still healthy: the next job succeeds
    assert make_thumbnails.delay(upload(s3, settings, samples.png(50, 40)), [32], ["png"]).get(
        **WAIT
    )


def test_over_the_byte_limit_fails_permanently(
    worker: Any, s3: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = upload(s3, settings, samples.jpeg(400, 300))
    monkeypatch.setenv("TASKAPP_IMAGE_MAX_BYTES", "2048")
    with pytest.raises(SourceTooLarge, match="2048"):
        make_thumbnails.delay(key).get(**WAIT)


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("uploads/never-uploaded.jpg", SourceNotFound, "does not exist"),
        ("file:///etc/passwd", FetchRefused, "file://"),
        ("gopher://127.0.0.1/_GET", FetchRefused, "gopher://"),
        ("http://169.254.169.254/latest/meta-data/", FetchRefused, "link-local"),
    ],
)
def test_refused_or_missing_source_fails_permanently(
    worker: Any, source: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make_thumbnails.delay(source).get(**WAIT)


def test_url_404_and_redirect_to_loopback_fail_permanently(
    worker: Any, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SourceNotFound, match="404"):
        make_thumbnails.delay(image_server.url("/tasks/nothing.jpg")).get(**WAIT)
    # given only the host name "localhost" is allowlisted, not the address 127.0.0.1
    monkeypatch.setenv("TASKAPP_FETCH_ALLOWLIST", "localhost")
    target = image_server.add("/tasks/target.jpg", samples.jpeg(64, 48))
    url = image_server.url(f"/redirect?to={target}", host="localhost")
    # when the allowed host redirects to 127.0.0.1; then the hop is refused
    with pytest.raises(FetchRefused, match="127.0.0.1, a loopback address"):
        make_thumbnails.delay(url).get(**WAIT)


def test_process_upload_records_thumbnails_and_analysis_in_the_database(
    worker: Any, s3: Any, settings: Settings, migrated_db: str
) -> None:
    # given an uploaded photo carrying GPS coordinates
    key = upload(s3, settings, samples.jpeg_with_metadata())
    # when the upload fan-out runs
    started = process_upload.delay(key).get(**WAIT)
    assert started["status"] == "pending"
    recorded = process_upload.AsyncResult(started["result_id"]).get(**WAIT)
    # then the row is done and holds both the manifest and the analysis
    row = records.upload_status(key)
    assert row is not None
    assert row["status"] == "done"
    assert row["manifest"] == recorded["manifest"]
    assert len(row["manifest"]["variants"]) == 4
    assert row["analysis"]["format"] == "JPEG"
    assert row["analysis"]["width"] == 640
    assert row["analysis"]["exif"]["Make"] == "TestCam"
    assert row["analysis"]["gps_removed"] is True
    assert "GPS" not in json.dumps(row["analysis"])
    assert len(row["analysis"]["phash"]) == 16
    assert row["analysis"]["dominant_color"]


def test_process_upload_of_a_bad_file_records_the_failure(
    worker: Any, s3: Any, settings: Settings, migrated_db: str
) -> None:
    key = upload(s3, settings, b"%PDF-1.7 not an image we take")
    started = process_upload.delay(key).get(**WAIT)
    outcome = process_upload.AsyncResult(started["result_id"])
    # the chord's error, whatever its wrapper, carries the task's message
    with pytest.raises(Exception, match="PDF images are not supported"):  # noqa: B017
        outcome.get(**WAIT)
    row = records.upload_status(key)
    assert row is not None
    assert row["status"] == "failed"
    assert "PDF images are not supported" in row["error"]


def test_analyze_task_runs_alone(worker: Any, s3: Any, settings: Settings) -> None:
    key = upload(s3, settings, samples.cmyk_jpeg())
    result = analyze.delay(key).get(**WAIT)
    assert (result["format"], result["mode"], result["width"]) == ("JPEG", "CMYK", 300)


def test_every_image_task_declares_limits_and_its_retry_policy(app: Any) -> None:
    names = sorted(n for n in app.tasks if n.startswith("images."))
    assert {"images.thumbnails", "images.analyze", "images.process_upload"} <= set(names)
    for name in names:
        task = app.tasks[name]
        assert task.soft_time_limit, name
        assert task.time_limit > task.soft_time_limit, name
        assert task.autoretry_for == (RetryableError,), name
        assert task.throws == (PermanentError,), name
        assert task.max_retries, name
        assert task.retry_jitter, name
