"""Thumbnails end to end in-process against the moto S3: manifest, headers, idempotency, errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from config.settings import Settings
from taskapp.errors import PermanentError
from taskapp.images import pipeline, service, storage
from taskapp.images.errors import (
    FetchRefused,
    InvalidRequest,
    SourceNotFound,
    SourceTooLarge,
    SourceUnavailable,
    UnsupportedFormat,
)
from tests.images import samples
from tests.images.conftest import ImageServer

pytestmark = pytest.mark.integration


def upload(s3: Any, settings: Settings, body: bytes, suffix: str = ".jpg") -> str:
    key = f"uploads/{uuid.uuid4().hex}{suffix}"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=body)
    return key


def thumbnails(source: str, sizes: Any = None, formats: Any = None) -> dict[str, Any]:
    return service.make_thumbnails(service.ThumbnailRequest.build(source, sizes, formats))


def test_variants_are_uploaded_with_type_cache_policy_and_listed_in_the_manifest(
    provisioned: Any, s3: Any, settings: Settings
) -> None:
    # given a 1200x800 JPEG uploaded to the bucket
    body = samples.jpeg(1200, 800)
    key = upload(s3, settings, body)
    # when thumbnails are made at 128 and 512 in JPEG and WebP
    manifest = thumbnails(key, [128, 512], ["jpeg", "webp"])
    # then the manifest lists four variants in request order, each stored as described
    assert [(v["size"], v["format"]) for v in manifest["variants"]] == [
        (128, "jpeg"),
        (128, "webp"),
        (512, "jpeg"),
        (512, "webp"),
    ]
    for variant in manifest["variants"]:
        head = s3.head_object(Bucket=settings.bucket, Key=variant["key"])
        assert (
            head["ContentType"] == {"jpeg": "image/jpeg", "webp": "image/webp"}[variant["format"]]
        )
        assert head["CacheControl"] == "public, max-age=31536000, immutable"
        assert head["ContentLength"] == variant["bytes"]
        assert (variant["width"], variant["height"]) == pipeline.fit(1200, 800, variant["size"])
    # and the keys are derived from the source's content hash
    fmt = pipeline.output_formats()["jpeg"]
    assert manifest["variants"][0]["key"] == service.variant_key(
        manifest["source_sha256"], 128, fmt
    )


def test_repeat_run_is_a_no_op_returning_the_same_manifest(
    provisioned: Any, s3: Any, settings: Settings
) -> None:
    # given thumbnails already made for a source
    key = upload(s3, settings, samples.jpeg(600, 400))
    first = thumbnails(key)
    # and a marker added to every stored variant (rewriting an object would drop it)
    for variant in first["variants"]:
        _mark(s3, settings.bucket, variant["key"])
    # when the same job runs again (a redelivered message)
    second = thumbnails(key)
    # then it returns the identical manifest and rewrote nothing
    assert second == first
    for variant in first["variants"]:
        head = s3.head_object(Bucket=settings.bucket, Key=variant["key"])
        assert head["Metadata"]["marker"] == "untouched"


def test_a_missing_variant_is_rendered_again_and_only_that_one(
    provisioned: Any, s3: Any, settings: Settings
) -> None:
    key = upload(s3, settings, samples.jpeg(600, 400))
    first = thumbnails(key)
    kept, lost = first["variants"][0]["key"], first["variants"][-1]["key"]
    _mark(s3, settings.bucket, kept)
    s3.delete_object(Bucket=settings.bucket, Key=lost)
    assert thumbnails(key) == first
    s3.head_object(Bucket=settings.bucket, Key=lost)
    assert s3.head_object(Bucket=settings.bucket, Key=kept)["Metadata"]["marker"] == "untouched"


def _mark(s3: Any, bucket: str, key: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=key)
    s3.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        Metadata={**head["Metadata"], "marker": "untouched"},
        MetadataDirective="REPLACE",
        ContentType=head["ContentType"],
        CacheControl=head["CacheControl"],
    )


def test_same_content_under_another_key_shares_variants(
    provisioned: Any, s3: Any, settings: Settings
) -> None:
    body = samples.png()
    a = thumbnails(upload(s3, settings, body, ".png"), [64], ["png"])
    b = thumbnails(upload(s3, settings, body, ".png"), [64], ["png"])
    assert a["variants"] == b["variants"]


def test_url_source_from_an_allowlisted_local_server(
    provisioned: Any, image_server: ImageServer
) -> None:
    # given a PNG served on 127.0.0.1 (TASKAPP_FETCH_ALLOWLIST=127.0.0.1 in this session)
    url = image_server.add("/service/photo.png", samples.png(300, 200), "image/png")
    # when thumbnailed from its URL
    manifest = thumbnails(url, [100], ["png"])
    # then the variant exists with the right size
    assert [(v["width"], v["height"]) for v in manifest["variants"]] == [(100, 67)]


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("file:///etc/passwd", FetchRefused, "file://"),
        ("gopher://127.0.0.1:70/_x", FetchRefused, "gopher://"),
        ("http://10.20.30.40/a.jpg", FetchRefused, "private"),
        ("uploads/does-not-exist.jpg", SourceNotFound, "does not exist"),
        ("  ", InvalidRequest, "source"),
    ],
)
def test_refused_and_missing_sources(
    provisioned: Any, source: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        thumbnails(source)


def test_source_over_the_byte_limit_is_refused_before_reading(
    provisioned: Any, s3: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = upload(s3, settings, samples.jpeg(400, 300))
    monkeypatch.setenv("TASKAPP_IMAGE_MAX_BYTES", "1000")
    with pytest.raises(SourceTooLarge, match="more than the 1000 allowed"):
        thumbnails(key)


@pytest.mark.parametrize(
    ("sizes", "formats", "error"),
    [
        ([0], ["jpeg"], InvalidRequest),
        ([99999], ["jpeg"], InvalidRequest),
        (["big"], ["jpeg"], InvalidRequest),
        ([], ["jpeg"], InvalidRequest),
        ([128], ["gif"], UnsupportedFormat),
        ([128], [], UnsupportedFormat),
    ],
)
def test_invalid_arguments_are_permanent(sizes: Any, formats: Any, error: type) -> None:
    with pytest.raises(error):
        service.ThumbnailRequest.build("uploads/x.jpg", sizes, formats)


def _client_error(status: int, code: str) -> ClientError:
    response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error(500, "InternalError"), SourceUnavailable),
        (_client_error(503, "SlowDown"), SourceUnavailable),
        (_client_error(404, "NoSuchKey"), SourceNotFound),
        (_client_error(403, "AccessDenied"), PermanentError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), SourceUnavailable),
    ],
)
def test_s3_errors_translate_to_retryable_or_permanent(exc: Exception, expected: type) -> None:
    error = storage.translate(exc, "s3://bucket/key")
    assert type(error) is expected
