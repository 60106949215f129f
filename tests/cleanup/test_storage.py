"""Storage cleanup against the session's S3 (moto): expiry by prefix, orphaned variants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskapp.cleanup.rules import RuleError
from taskapp.cleanup.service import run_cleanup
from taskapp.cleanup.storage import delete_keys, list_objects
from tests.support.databases import SQLITE_ONLY

STORAGE = ["tmp-uploads", "expired-reports", "orphaned-variants"]


def keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in list_objects(s3, bucket, prefix))


def put(s3, bucket, key, **metadata):
    s3.put_object(Bucket=bucket, Key=key, Body=b"x", Metadata=metadata)


@SQLITE_ONLY
def test_objects_under_a_prefix_expire_after_their_age(s3, empty_bucket, database_url):
    # given temporary uploads and a report, all written just now, and look-alike prefixes
    for key in ("tmp/a.jpg", "tmp/deep/b.jpg", "tmpfiles/c.jpg", "reports/r.csv", "keep/d"):
        put(s3, empty_bucket, key)
    # when cleanup runs 25 hours from now: tmp/ (24 h) is due, reports/ (7 days) is not
    later = datetime.now(UTC) + timedelta(hours=25)
    dry = run_cleanup(STORAGE, dry_run=True, url=database_url, now=later)
    report = run_cleanup(STORAGE, url=database_url, now=later)
    # then the dry run counted them and the real run removed exactly them
    assert dry["rules"]["tmp-uploads"]["count"] == 2
    assert report["rules"]["tmp-uploads"]["count"] == 2
    assert report["rules"]["expired-reports"]["count"] == 0
    assert keys(s3, empty_bucket) == ["keep/d", "reports/r.csv", "tmpfiles/c.jpg"]
    # and 8 days from now the report is gone too
    run_cleanup(["expired-reports"], url=database_url, now=datetime.now(UTC) + timedelta(days=8))
    assert keys(s3, empty_bucket) == ["keep/d", "tmpfiles/c.jpg"]


@SQLITE_ONLY
def test_variants_whose_source_is_gone_are_removed(s3, empty_bucket, database_url):
    # given variants of a live source, of a deleted source, and one without the header
    put(s3, empty_bucket, "uploads/live.jpg")
    put(s3, empty_bucket, "thumbnails/aa/200.webp", **{"source-key": "uploads/live.jpg"})
    put(s3, empty_bucket, "thumbnails/bb/200.webp", **{"source-key": "uploads/gone.jpg"})
    put(s3, empty_bucket, "thumbnails/bb/800.webp", **{"source-key": "uploads/gone.jpg"})
    put(s3, empty_bucket, "thumbnails/cc/200.webp")
    # when cleanup runs now, within the hour of grace / then nothing is touched
    assert run_cleanup(["orphaned-variants"], url=database_url)["total"] == 0
    # when it runs two hours later, dry and then for real
    later = datetime.now(UTC) + timedelta(hours=2)
    dry = run_cleanup(["orphaned-variants"], dry_run=True, url=database_url, now=later)
    report = run_cleanup(["orphaned-variants"], url=database_url, now=later)
    # then both variants of the deleted source, and only they, are gone
    assert dry["rules"]["orphaned-variants"]["count"] == 2
    assert report["rules"]["orphaned-variants"]["count"] == 2
    assert keys(s3, empty_bucket) == [
        "thumbnails/aa/200.webp",
        "thumbnails/cc/200.webp",
        "uploads/live.jpg",
    ]


def test_listing_pages_and_deletes_go_in_batches(s3, empty_bucket):
    # given 25 objects
    for i in range(25):
        put(s3, empty_bucket, f"tmp/{i:02d}")
    # when listed 7 per page and deleted 10 per request
    listed = [o["Key"] for o in list_objects(s3, empty_bucket, "tmp/", page_size=7)]
    deleted, requests = delete_keys(s3, empty_bucket, listed, batch_size=10)
    # then every page was read and three delete requests removed all 25
    assert len(listed) == 25
    assert (deleted, requests) == (25, 3)
    assert keys(s3, empty_bucket) == []


@SQLITE_ONLY
def test_a_missing_bucket_is_a_permanent_error_naming_the_rule(s3, database_url, monkeypatch):
    monkeypatch.setenv("TASKAPP_BUCKET", "no-such-bucket-for-cleanup")
    with pytest.raises(RuleError, match="retention rule 'tmp-uploads': S3 refused: NoSuchBucket"):
        run_cleanup(["tmp-uploads"], url=database_url)


@SQLITE_ONLY
def test_thumbnails_of_a_deleted_upload_are_removed_end_to_end(s3, empty_bucket, database_url):
    import io

    from PIL import Image

    from taskapp.images.service import ThumbnailRequest, make_thumbnails

    # given thumbnails made by the images service from an upload in the bucket
    image = io.BytesIO()
    Image.new("RGB", (640, 480), "teal").save(image, "JPEG")
    s3.put_object(Bucket=empty_bucket, Key="uploads/photo.jpg", Body=image.getvalue())
    manifest = make_thumbnails(ThumbnailRequest.build("uploads/photo.jpg", [64, 128], ["jpeg"]))
    variants = sorted(v["key"] for v in manifest["variants"])
    assert keys(s3, empty_bucket, "thumbnails/") == variants
    # when the upload is deleted and cleanup runs after the grace period
    s3.delete_object(Bucket=empty_bucket, Key="uploads/photo.jpg")
    later = datetime.now(UTC) + timedelta(hours=2)
    report = run_cleanup(["orphaned-variants"], url=database_url, now=later)
    # then its variants are gone
    assert report["rules"]["orphaned-variants"]["count"] == 2
    assert keys(s3, empty_bucket, "thumbnails/") == []
