"""boto3 clients from settings: one endpoint, one region, the standard credential chain.

Every boto3 client taskapp makes comes from :func:`client`, which hands its settings' region and
endpoint to the SQS extension's client cache (:mod:`taskapp.sqs.boto`, with the profiles: how
patient a client is). The SQS and S3 plumbing is the extension's too; :mod:`taskapp.aws.sqs`
and :mod:`taskapp.aws.s3` name it for the application.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings, load_settings
from taskapp.sqs.boto import Profile, client_for, config

__all__ = ["Profile", "client", "config"]


def client(service: str, settings: Settings | None = None, *, profile: Profile = "default") -> Any:
    """A cached boto3 client for ``service`` (``sqs``, ``s3``, ``sns``, ``sesv2``, ...)."""
    # boto3 also reads AWS_ENDPOINT_URL itself; passing it keeps settings the single source.
    return client_for(service, settings or load_settings(), profile)
