"""Thumbnails and analysis of one source image: load it, render or reuse variants, upload them.

Output keys are content-addressed: a hash of the source bytes plus the variant's parameters
(size, format, encoder settings, pipeline version). A redelivered or repeated job therefore finds
its variants already in S3 and returns the same manifest without decoding anything.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import Settings, load_settings
from taskapp.aws import client
from taskapp.images import analyze as analysis
from taskapp.images import fetch, pipeline, storage
from taskapp.images.errors import FetchRefused, InvalidRequest, UnsupportedFormat
from taskapp.images.pipeline import OutputFormat

__all__ = [
    "ThumbnailRequest",
    "DEFAULT_SIZES",
    "DEFAULT_FORMATS",
    "load_source",
    "variant_key",
    "make_thumbnails",
    "analyze_source",
]

log = logging.getLogger(__name__)

DEFAULT_SIZES = (128, 512)
DEFAULT_FORMATS = ("jpeg", "webp")
MAX_SIZE = 4096
MAX_VARIANTS = 24
KEY_PREFIX = "thumbnails"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class ThumbnailRequest:
    """A validated ``images.thumbnails`` call."""

    source: str
    sizes: tuple[int, ...]
    formats: tuple[OutputFormat, ...]

    @classmethod
    def build(
        cls,
        source: str,
        sizes: Iterable[int] | None = None,
        formats: Iterable[str] | None = None,
    ) -> ThumbnailRequest:
        """Validate the task's arguments; raise ``InvalidRequest``/``UnsupportedFormat``."""
        if not isinstance(source, str) or not source.strip():
            raise InvalidRequest("source must be an S3 key or an http(s) URL")
        size_list = list(DEFAULT_SIZES if sizes is None else sizes)
        if not size_list or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIZE for s in size_list
        ):
            raise InvalidRequest(f"sizes must be integers from 1 to {MAX_SIZE}: {size_list!r}")
        known = pipeline.output_formats()
        names = [str(f).lower() for f in (DEFAULT_FORMATS if formats is None else formats)]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise UnsupportedFormat(
                f"cannot write {unknown or 'no format'}: supported are {sorted(known)}"
            )
        sizes_t = tuple(dict.fromkeys(size_list))
        formats_t = tuple(known[n] for n in dict.fromkeys(names))
        if len(sizes_t) * len(formats_t) > MAX_VARIANTS:
            raise InvalidRequest(f"at most {MAX_VARIANTS} variants per call")
        return cls(source.strip(), sizes_t, formats_t)

    def plan(self) -> list[tuple[int, OutputFormat]]:
        """Every (size, format) pair, in the order the manifest lists them."""
        return [(size, fmt) for size in self.sizes for fmt in self.formats]


def load_source(source: str, settings: Settings) -> bytes:
    """The bytes of ``source``: an http(s) URL (fetched safely) or a key in the bucket."""
    match = _SCHEME.match(source)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("http", "https"):
        return fetch.fetch(
            source,
            max_bytes=settings.image_max_bytes,
            allowlist=fetch.Allowlist.parse(settings.fetch_allowlist),
        ).body
    if scheme:
        raise FetchRefused(f"refused {scheme}:// source: only http(s) URLs and S3 keys")
    return storage.read_object(
        client("s3", settings), settings.bucket, source, settings.image_max_bytes
    )


def variant_key(source_sha256: str, size: int, fmt: OutputFormat) -> str:
    """The content-addressed S3 key of one variant."""
    params = f"{source_sha256}|v{pipeline.PIPELINE_VERSION}|{size}|{fmt.name}|{fmt.params()}"
    digest = hashlib.sha256(params.encode()).hexdigest()[:24]
    return f"{KEY_PREFIX}/{source_sha256[:16]}/{size}-{digest}.{fmt.extension}"


def _entry(
    key: str, size: int, fmt: OutputFormat, width: int, height: int, n: int
) -> dict[str, Any]:
    return {
        "key": key,
        "size": size,
        "format": fmt.name,
        "content_type": fmt.content_type,
        "width": width,
        "height": height,
        "bytes": n,
    }


def _existing(
    s3: Any, bucket: str, key: str, size: int, fmt: OutputFormat
) -> dict[str, Any] | None:
    head = storage.head_object(s3, bucket, key)
    if head is None:
        return None  # absent: render it
    meta = head.get("Metadata") or {}
    try:
        width, height = int(meta["width"]), int(meta["height"])
    except (KeyError, ValueError):
        return None  # absent, or not written by us: render it again
    return _entry(key, size, fmt, width, height, int(head["ContentLength"]))


def make_thumbnails(request: ThumbnailRequest, settings: Settings | None = None) -> dict[str, Any]:
    """Render and upload every missing variant of ``request``; return the manifest."""
    settings = settings or load_settings()
    s3 = client("s3", settings)
    data = load_source(request.source, settings)
    sha = hashlib.sha256(data).hexdigest()
    plan = request.plan()
    keys = {(size, fmt.name): variant_key(sha, size, fmt) for size, fmt in plan}
    entries = {
        pair: _existing(s3, settings.bucket, key, pair[0], pipeline.output_formats()[pair[1]])
        for pair, key in keys.items()
    }
    missing = [(size, fmt) for size, fmt in plan if entries[(size, fmt.name)] is None]
    # A variant of a bucket object names it, so cleanup can remove the variant once the source
    # is deleted (taskapp/cleanup/storage.py); a URL source has no such owner.
    source_key = None if _SCHEME.match(request.source) else request.source
    if missing:
        for variant in _render(data, missing, settings):
            pair = (variant.size, variant.format.name)
            entries[pair] = _upload(s3, settings.bucket, keys[pair], variant, sha, source_key)
    log.info(
        "images.thumbnails source_sha256=%s variants=%d rendered=%d",
        sha[:16],
        len(plan),
        len(missing),
    )
    return {
        "source": request.source,
        "source_sha256": sha,
        "variants": [entries[(size, fmt.name)] for size, fmt in plan],
    }


def _render(
    data: bytes, plan: Sequence[tuple[int, OutputFormat]], settings: Settings
) -> list[pipeline.Variant]:
    largest = max(size for size, _ in plan)
    decoded = pipeline.decode(data, max_pixels=settings.max_image_pixels, largest=largest)
    return pipeline.render(decoded, plan)


def _upload(
    s3: Any, bucket: str, key: str, variant: pipeline.Variant, sha: str, source_key: str | None
) -> dict[str, Any]:
    metadata = {
        "width": str(variant.width),
        "height": str(variant.height),
        "source-sha256": sha,
        "pipeline": pipeline.PIPELINE_VERSION,
    }
    if source_key is not None:
        metadata["source-key"] = source_key
    storage.put_object(s3, bucket, key, variant.body, variant.format.content_type, metadata)
    return _entry(
        key, variant.size, variant.format, variant.width, variant.height, len(variant.body)
    )


def analyze_source(source: str, settings: Settings | None = None) -> dict[str, Any]:
    """The analysis of ``source`` (S3 key or URL): see ``taskapp.images.analyze``."""
    settings = settings or load_settings()
    data = load_source(source, settings)
    return {"source": source, **analysis.analyze(data, max_pixels=settings.max_image_pixels)}
