"""A task's retry policy, spelled one way: the options every ``@app.task`` spreads in.

Each task declares its policy in its decorator, ``**retry_policy(backoff=..., ...)``, so the
numbers are read where the task is. What the policy retries is the same everywhere:
``RetryableError`` is retried with exponential backoff and full jitter, ``PermanentError`` fails
at once and is expected (``throws``: logged without a traceback), and anything else is a crash,
never retried. ``tests/unit/test_conventions.py`` checks that every task declares one.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from taskapp.errors import PermanentError, RetryableError

__all__ = ["POLICY_OPTIONS", "retry_policy"]

#: The ``@app.task`` options a policy sets.
POLICY_OPTIONS = (
    "autoretry_for",
    "throws",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "max_retries",
)


def retry_policy(*, backoff: int, backoff_max: int, max_retries: int) -> Mapping[str, Any]:
    """The ``@app.task`` options of a policy: retry ``RetryableError``, fail ``PermanentError``.

    The wait before retry ``n`` (from 0) is drawn at random between 0 and
    ``min(backoff * 2**n, backoff_max)`` seconds (Celery's full jitter), at most ``max_retries``
    times; then the task fails with the last error.
    """
    if not 0 < backoff <= backoff_max or max_retries < 0:
        raise ValueError(f"bad retry policy: {backoff=} {backoff_max=} {max_retries=}")
    return MappingProxyType(
        {
            "autoretry_for": (RetryableError,),
            "throws": (PermanentError,),
            "retry_backoff": backoff,
            "retry_backoff_max": backoff_max,
            "retry_jitter": True,
            "max_retries": max_retries,
        }
    )
