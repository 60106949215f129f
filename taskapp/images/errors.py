"""The specific ways an image job fails, each one of our two error kinds.

Every permanent error carries a message a person can act on; none of them is retried.
"""

from __future__ import annotations

from taskapp.errors import PermanentError, RetryableError

__all__ = [
    "InvalidRequest",
    "NotAnImage",
    "CorruptImage",
    "DecompressionBomb",
    "SourceTooLarge",
    "UnsupportedFormat",
    "FetchRefused",
    "InvalidURL",
    "SourceNotFound",
    "SourceUnavailable",
]


class InvalidRequest(PermanentError):
    """The task was called with arguments it cannot honour (bad size, unknown format)."""


class NotAnImage(PermanentError):
    """The source bytes are not an image Pillow recognises."""


class CorruptImage(PermanentError):
    """The source is an image but cannot be decoded completely (truncated, damaged)."""


class DecompressionBomb(PermanentError):
    """The image claims more pixels than TASKAPP_MAX_IMAGE_PIXELS allows."""


class SourceTooLarge(PermanentError):
    """The source has more bytes than TASKAPP_IMAGE_MAX_BYTES allows."""


class UnsupportedFormat(PermanentError):
    """A format we do not read (source) or cannot write (requested variant)."""


class FetchRefused(PermanentError):
    """A URL we will not fetch: scheme, private destination, redirects, or an HTTP refusal."""


class InvalidURL(FetchRefused):
    """A URL whose host could be read two ways (trailing dot, ``%``, zone id, bad IDNA): it is
    refused rather than checked under one spelling and fetched under another."""


class SourceNotFound(PermanentError):
    """The S3 key or URL does not exist (404)."""


class SourceUnavailable(RetryableError):
    """The source could not be read right now (network error, timeout, S3 or HTTP 5xx)."""
