"""Report files in S3: streamed uploads under ``reports/``, parts of big reports, presigned URLs.

An upload is a write-only stream: bytes go out as 8 MiB multipart parts as they are written, so
memory stays flat however big the report is. S3 and connection errors become RetryableError or
PermanentError here, at the boundary.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from config.settings import load_settings
from taskapp.aws import client
from taskapp.aws.s3 import classify
from taskapp.errors import PermanentError, RetryableError

__all__ = [
    "PREFIX",
    "PART_SIZE",
    "S3Upload",
    "upload",
    "report_key",
    "part_key",
    "parts_prefix",
    "open_object",
    "count_objects",
    "delete_objects",
    "presigned_url",
    "s3_errors",
]

PREFIX = "reports/"
#: Multipart part size (S3's minimum is 5 MiB for every part but the last).
PART_SIZE = 8 * 1024 * 1024


@contextmanager
def s3_errors(action: str) -> Iterator[None]:
    """Translate botocore errors raised inside into our two error kinds."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if classify(exc) == "retryable":
            raise RetryableError(f"S3 {action}: {code}") from exc
        raise PermanentError(f"S3 {action}: {code}") from exc
    except BotoCoreError as exc:  # connection refused, timeouts, closed connections
        raise RetryableError(f"S3 {action}: {type(exc).__name__}") from exc


def report_key(name: str, report_id: str, filename: str) -> str:
    """Where a finished report lives: one folder per report run."""
    return f"{PREFIX}{name}/{report_id}/{filename}"


def parts_prefix(report_id: str) -> str:
    """Where the parts of a big report wait for the merge."""
    return f"{PREFIX}parts/{report_id}/"


def part_key(report_id: str, index: int) -> str:
    """Where part ``index`` of a big report waits for the merge."""
    return f"{parts_prefix(report_id)}{index:05d}.csv"


class S3Upload(io.RawIOBase):
    """A non-seekable binary stream whose bytes become one S3 object (multipart when big)."""

    def __init__(
        self, key: str, content_type: str, disposition: str, *, part_size: int = PART_SIZE
    ) -> None:
        super().__init__()
        self.s3, self.bucket, self.key = client("s3"), load_settings().bucket, key
        self.headers = {"ContentType": content_type, "ContentDisposition": disposition}
        self.part_size = part_size
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self.size += len(view)
        while len(self._buffer) >= self.part_size:
            chunk = bytes(self._buffer[: self.part_size])
            del self._buffer[: self.part_size]
            self._send_part(chunk)
        return len(view)

    def _send_part(self, chunk: bytes) -> None:
        with s3_errors(f"upload {self.key}"):
            if self._upload_id is None:
                created = self.s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, **self.headers
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            sent = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=chunk,
            )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def finish(self) -> int:
        """Make the object visible (complete the upload); return its size in bytes."""
        if self._upload_id is None:
            with s3_errors(f"put {self.key}"):
                self.s3.put_object(
                    Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), **self.headers
                )
        else:
            if self._buffer:
                self._send_part(bytes(self._buffer))
            with s3_errors(f"complete {self.key}"):
                self.s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        self._buffer = bytearray()
        return self.size

    def abort(self) -> None:
        """Drop the parts sent so far (best effort: S3 lifecycle rules catch what this misses)."""
        self._buffer = bytearray()
        if self._upload_id is not None:
            # The original error matters more than the cleanup's.
            with suppress(ClientError, BotoCoreError):
                self.s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )


@contextmanager
def upload(key: str, content_type: str, disposition: str) -> Iterator[S3Upload]:
    """A stream whose contents become ``key`` if the block succeeds, and nothing if it fails."""
    stream = S3Upload(key, content_type, disposition)
    try:
        yield stream
    except BaseException:
        stream.abort()
        raise
    stream.finish()


def open_object(key: str) -> IO[bytes]:
    """The body of ``key`` as a readable binary stream."""
    with s3_errors(f"get {key}"):
        body = client("s3").get_object(Bucket=load_settings().bucket, Key=key)["Body"]
    return io.BufferedReader(body, buffer_size=256 * 1024)


def count_objects(prefix: str) -> int:
    """How many objects are under ``prefix``."""
    s3, bucket, count = client("s3"), load_settings().bucket, 0
    with s3_errors(f"list {prefix}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            count += page.get("KeyCount", 0)
    return count


def delete_objects(keys: Sequence[str]) -> None:
    """Delete ``keys`` in batches of 1,000 (the DeleteObjects limit)."""
    s3, bucket = client("s3"), load_settings().bucket
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        with s3_errors("delete parts"):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def presigned_url(key: str, expires_in: int | None = None) -> str:
    """A GET URL for ``key`` valid ``expires_in`` seconds (default TASKAPP_REPORT_URL_EXPIRES)."""
    settings = load_settings()
    with s3_errors(f"presign {key}"):
        return str(
            # SigV4 explicitly (the "presign" profile): URLs that carry their expiry.
            client("s3", settings, profile="presign").generate_presigned_url(
                "get_object",
                Params={"Bucket": settings.bucket, "Key": key},
                ExpiresIn=expires_in or settings.report_url_expires,
            )
        )
