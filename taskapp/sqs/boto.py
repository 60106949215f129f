"""boto3 clients of the extension: one cache, and how patient each client is (its profile).

Every boto3 client the extension makes comes from :func:`client`; the application builds its
own through the same function (``taskapp.aws.client`` passes its settings' region and
endpoint). An ``endpoint_url`` of ``None`` leaves the endpoint to boto3, which reads
``AWS_ENDPOINT_URL`` (the local emulator) like kombu's own clients do.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, Protocol

import boto3
from botocore.config import Config

__all__ = ["Endpoint", "Profile", "client", "client_for", "config"]

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
def client(
    service: str, region: str, endpoint_url: str | None = None, profile: Profile = "default"
) -> Any:
    """A cached boto3 client for ``service`` (``sqs``, ``s3``, ``sns``, ...) in ``region``."""
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=_CONFIGS[profile]
    )


class Endpoint(Protocol):
    """Where the AWS services are: the application's settings object, or any with these two."""

    @property
    def region(self) -> str: ...

    @property
    def aws_endpoint_url(self) -> str | None: ...


def client_for(service: str, where: Endpoint, profile: Profile = "default") -> Any:
    """The cached client for ``service`` at ``where``'s region and endpoint."""
    return client(service, where.region, where.aws_endpoint_url, profile)
