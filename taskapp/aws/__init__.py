"""boto3 clients from settings: one endpoint, one region, the standard credential chain.

Every boto3 client taskapp makes comes from :func:`client`; what differs between callers is
only how patient the client is (its ``profile``). The SQS and S3 plumbing that several parts
share lives beside it: :mod:`taskapp.aws.sqs` (queue depth, "queue missing") and
:mod:`taskapp.aws.s3` (the bucket, error classification).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import boto3
from botocore.config import Config

from config.settings import Settings, load_settings

__all__ = ["Profile", "client", "config"]

#: How a client behaves on a slow or failing endpoint:
#: ``default`` retries (standard mode) for calls on a task's or a command's path;
#: ``quick`` gives up fast, for cleanup at exit and the sweeper, which must not hang on an
#: endpoint that is gone; ``once`` makes one attempt, for a probe whose failure is an answer;
#: ``presign`` signs URLs with SigV4 (botocore may otherwise presign with SigV2: no expiry cap,
#: and refused by regions opened since 2014; SigV4 URLs carry X-Amz-Expires, at most 7 days).
Profile = Literal["default", "quick", "once", "presign"]
_CONFIGS: dict[str, Config] = {
    "default": Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
    ),
    "quick": Config(connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2}),
    "once": Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10),
    "presign": Config(signature_version="s3v4"),
}


def config(profile: Profile) -> Config:
    """The botocore ``Config`` of ``profile``, for a client built elsewhere (kombu's own)."""
    return _CONFIGS[profile]


@lru_cache(maxsize=32)
def _client(service: str, region: str, endpoint_url: str | None, profile: str) -> Any:
    # boto3 also reads AWS_ENDPOINT_URL itself; passing it keeps settings the single source.
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=_CONFIGS[profile]
    )


def client(service: str, settings: Settings | None = None, *, profile: Profile = "default") -> Any:
    """A cached boto3 client for ``service`` (``sqs``, ``s3``, ``sns``, ``sesv2``, ...)."""
    settings = settings or load_settings()
    return _client(service, settings.region, settings.aws_endpoint_url, profile)
