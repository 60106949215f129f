"""moto's standalone server as the local AWS (SQS, SNS, S3, SES over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from moto.server import ThreadedMotoServer

from taskapp.local.net import LOOPBACK, free_port

__all__ = ["LocalAWS", "LOCAL_CREDENTIALS"]

#: moto accepts any credentials; these make boto3's chain resolve without an AWS account.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class LocalAWS:
    """A moto server bound to 127.0.0.1 on its own port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> LocalAWS:
        # moto serves through werkzeug, which logs every request at INFO.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def export(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Point boto3 (and so kombu and every taskapp client) at this server."""
        environ = os.environ if environ is None else environ
        for key, value in LOCAL_CREDENTIALS.items():
            environ[key] = value
        environ["AWS_ENDPOINT_URL"] = self.endpoint_url
