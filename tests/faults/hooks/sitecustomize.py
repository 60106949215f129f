"""Test-only AWS error injection for worker subprocesses (never imported by product code).

A fault cell puts this directory on a worker's ``PYTHONPATH``; Python imports
``sitecustomize`` at start-up. Nothing happens unless ``TASKAPP_TEST_INJECT_SQS_ERRORS`` holds
a share (``0.2``): then that share of SQS calls (every fifth one) is answered, without
reaching the endpoint, with one of ``RequestThrottled`` / ``ThrottlingException`` (400),
``ServiceUnavailable`` (503) or ``InternalError`` (500), in turn.

* Blocking calls (acks, visibility changes, sends): a botocore ``before-send.sqs`` handler
  returns the error response, so botocore's own retry logic sees it as AWS's.
* The worker's receive goes through kombu's curl client, not botocore's sender: the request
  is answered with the error on the event loop instead of being sent
  (``AsyncHTTPSConnection.getresponse``), so kombu parses it as AWS's.

With ``TASKAPP_TEST_INJECT_SQS_ERRORS_FLAG`` naming a file as well, errors are injected only
while that file exists (the soak switches throttling on and off, as it does the faults below).

Counts go to ``TASKAPP_TEST_INJECT_LOG`` (one line per injected error) when set.

``TASKAPP_TEST_INJECT_S3_SLOWDOWN`` names a flag file: while it exists, every S3 ``PutObject``
and ``UploadPart`` is answered ``503 SlowDown`` (a ``before-send`` handler, so botocore's own
retries see it as AWS's); the test switches the fault by creating and removing the file.
``TASKAPP_TEST_INJECT_SNS_FAILURE`` does the same for SNS ``Publish``/``PublishBatch``
(``500 InternalError``): events and remote control.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

SHARE = float(os.environ.get("TASKAPP_TEST_INJECT_SQS_ERRORS") or 0)
_ERRORS = itertools.cycle(
    [
        (400, "RequestThrottled"),
        (400, "ThrottlingException"),
        (503, "ServiceUnavailable"),
        (500, "InternalError"),
    ]
)


_CALLS = itertools.count(1)
SQS_FLAG = os.environ.get("TASKAPP_TEST_INJECT_SQS_ERRORS_FLAG")


def _pick() -> tuple[int, str] | None:
    if SQS_FLAG and not os.path.exists(SQS_FLAG):
        return None
    # Every (1/SHARE)th call, not a random one: the cell must not depend on luck.
    if next(_CALLS) % round(1 / SHARE):
        return None
    status, code = next(_ERRORS)
    if path := os.environ.get("TASKAPP_TEST_INJECT_LOG"):
        with open(path, "a") as out:
            out.write(f"{os.getpid()} {code}\n")
    return status, code


def _body(code: str) -> bytes:
    return json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": "injected"}).encode()


def _headers(code: str) -> dict[str, str]:
    return {"x-amzn-query-error": f"{code};Sender", "content-type": "application/x-amz-json-1.0"}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _before_send(request: Any, **_: Any) -> Any:
    picked = _pick()
    if picked is None:
        return None
    from botocore.awsrequest import AWSResponse

    status, code = picked
    return AWSResponse(request.url, status, _headers(code), _Raw(_body(code)))


def _install() -> None:
    import botocore.client
    from kombu.asynchronous.aws import connection as aws_connection
    from kombu.asynchronous.http.base import Headers, Response

    created = botocore.client.BaseClient.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        created(self, *args, **kwargs)
        if self.meta.service_model.service_name == "sqs":
            self.meta.events.register("before-send.sqs", _before_send)

    botocore.client.BaseClient.__init__ = init  # type: ignore[method-assign]

    sent = aws_connection.AsyncHTTPSConnection.getresponse

    def getresponse(self: Any, callback: Any = None) -> Any:
        picked = _pick()
        if picked is None:
            return sent(self, callback)
        # Answered here, never sent: as with a real throttle, SQS does not see the call.
        from kombu.asynchronous import get_event_loop
        from vine import promise, transform

        status, code = picked
        request = self.getrequest()
        request.then(transform(self.Response, callback))
        fake = Response(request, status, headers=Headers(_headers(code)), buffer=None)
        fake._body = _body(code)
        # (call_soon drops the arguments of a promise: wrap it in one that carries them)
        get_event_loop().call_soon(promise(request.on_ready, (fake,)))
        return request

    aws_connection.AsyncHTTPSConnection.getresponse = getresponse  # type: ignore[method-assign]


SLOWDOWN_FLAG = os.environ.get("TASKAPP_TEST_INJECT_S3_SLOWDOWN")
_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
SNS_FLAG = os.environ.get("TASKAPP_TEST_INJECT_SNS_FAILURE")
_SNS_ERROR = (
    b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>"
    b"<Message>injected</Message></Error><RequestId>0</RequestId></ErrorResponse>"
)


def _answer_while_flagged(
    flag: str | None, label: str, status: int, content_type: str, body: bytes
) -> Any:
    """A before-send handler answering ``status`` with ``body`` while the file ``flag`` exists."""

    def handler(request: Any, **_: Any) -> Any:
        if not flag or not os.path.exists(flag):
            return None
        from botocore.awsrequest import AWSResponse

        if path := os.environ.get("TASKAPP_TEST_INJECT_LOG"):
            with open(path, "a") as out:
                out.write(f"{os.getpid()} {label}\n")
        return AWSResponse(request.url, status, {"content-type": content_type}, _Raw(body))

    return handler


_slow_down = _answer_while_flagged(SLOWDOWN_FLAG, "SlowDown", 503, "application/xml", _SLOWDOWN)
_sns_fails = _answer_while_flagged(SNS_FLAG, "SNSInternalError", 500, "text/xml", _SNS_ERROR)


def _install_for(service: str, operations: tuple[str, ...], handler: Any) -> None:
    import botocore.client

    created = botocore.client.BaseClient.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        created(self, *args, **kwargs)
        if self.meta.service_model.service_name == service:
            for operation in operations:
                self.meta.events.register(f"before-send.{service}.{operation}", handler)

    botocore.client.BaseClient.__init__ = init  # type: ignore[method-assign]


if SHARE:
    _install()
if SLOWDOWN_FLAG:
    _install_for("s3", ("PutObject", "UploadPart"), _slow_down)
if SNS_FLAG:
    _install_for("sns", ("Publish", "PublishBatch"), _sns_fails)
