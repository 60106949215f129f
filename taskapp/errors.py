"""The two kinds of task failure: worth retrying, or not."""

from __future__ import annotations

__all__ = ["TaskappError", "RetryableError", "PermanentError"]


class TaskappError(Exception):
    """Base of the errors a task raises on purpose."""


class RetryableError(TaskappError):
    """A transient failure (network, throttling, 4xx from a server): retry with backoff."""


class PermanentError(TaskappError):
    """Bad input or a refusal that will not change on retry: fail now, dead-letter the message."""
