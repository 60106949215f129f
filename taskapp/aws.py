"""boto3 clients from settings: one endpoint, one region, the standard credential chain."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from config.settings import Settings, load_settings

__all__ = ["client"]

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
)


@lru_cache(maxsize=32)
def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    # boto3 also reads AWS_ENDPOINT_URL itself; passing it keeps settings the single source.
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=_CONFIG
    )


def client(service: str, settings: Settings | None = None) -> Any:
    """A cached boto3 client for ``service`` (``sqs``, ``s3``, ``sns``, ``sesv2``, ...)."""
    settings = settings or load_settings()
    return _client(service, settings.region, settings.aws_endpoint_url)
