"""moto's standalone server as the local AWS (SQS, SNS, S3, SES over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import MutableMapping
from contextlib import suppress

from taskapp.local import LocalGroupMissing
from taskapp.local.net import LOOPBACK, free_port

try:
    from moto.server import ThreadedMotoServer
except ModuleNotFoundError as missing:  # the 'local' dependency group
    raise LocalGroupMissing(missing.name) from missing

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
        """Stop serving; return once the server thread has ended."""
        stopper = threading.Thread(target=self._server.stop, name="moto-stop")
        stopper.start()
        # werkzeug's serve_forever looks for a shutdown request only when its select() returns,
        # every 0.5 s when idle: wake it with a connection until it has seen the request.
        while stopper.is_alive():
            with suppress(OSError):
                socket.create_connection((LOOPBACK, self.port), timeout=0.1).close()
            stopper.join(0.02)

    def export(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Point boto3 (and so kombu and every taskapp client) at this server."""
        environ = os.environ if environ is None else environ
        for key, value in LOCAL_CREDENTIALS.items():
            environ[key] = value
        environ["AWS_ENDPOINT_URL"] = self.endpoint_url
