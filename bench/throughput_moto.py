"""The throughput bench's moto server: one process of its own, counting every request.

    python bench/throughput_moto.py        prints "PORT <n>", serves until stdin closes

Requests are counted per service, action and queue (or topic) name, so each contender, on its
own queue prefix, is counted separately. ``GET /__bench/counts`` answers the counts as JSON,
``POST /__bench/reset`` clears them. The process exits when its parent closes stdin or dies.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from taskapp.local.aws import LocalAWS

# ListQueues is attributed to its QueueNamePrefix (a contender's prefix), like a queue name.
_QUEUE_URL = re.compile(rb'"Queue(?:Url|Name|NamePrefix)"\s*:\s*"([^"]+)"')


class CountingApp:
    """WSGI middleware in front of moto: one count per request, by service, action and target."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__bench/"):
            return self._control(path, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        key = classify(environ, body)
        with self.lock:
            self.counts[key] += 1
        return self.app(environ, start_response)

    def _control(self, path: str, start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            payload = json.dumps(dict(self.counts)).encode()
            if path == "/__bench/reset":
                self.counts.clear()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [payload]


def classify(environ: dict[str, Any], body: bytes) -> str:
    """``sqs ReceiveMessage <queue>``, ``sns Publish <topic>``, ``s3 PUT`` ..."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("AmazonSQS."):
        match = _QUEUE_URL.search(body[:4096]) or _QUEUE_URL.search(body)
        queue = match.group(1).decode().rsplit("/", 1)[-1] if match else "-"
        return f"sqs {target.split('.', 1)[1]} {queue}"
    content_type = environ.get("CONTENT_TYPE", "")
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        action = form.get("Action", ["-"])[0]
        if "TopicArn" in form:
            return f"sns {action} {form['TopicArn'][0].rsplit(':', 1)[-1]}"
        if "QueueUrl" in form:
            return f"sqs {action} {form['QueueUrl'][0].rsplit('/', 1)[-1]}"
        if "QueueName" in form or "QueueNamePrefix" in form:
            name = (form.get("QueueName") or form["QueueNamePrefix"])[0]
            return f"sqs {action} {name}"
        return f"query {action} -"
    return f"other {environ.get('REQUEST_METHOD', '-')} -"


def main() -> None:
    aws = LocalAWS().start()
    server = aws._server._server  # werkzeug's server: requests are dispatched to .app
    server.app = CountingApp(server.app)
    print(f"PORT {aws.port}", flush=True)
    sys.stdin.read()  # EOF: the bench is done (or gone)
    aws.stop()


if __name__ == "__main__":
    main()
