"""Each bad ``email.send`` argument fails with its own permanent error naming the field."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from taskapp.email.errors import (
    AttachmentError,
    AttachmentTooLarge,
    EmailInputError,
    HeaderInjection,
    InvalidAddress,
    NoRecipients,
)
from taskapp.email.request import EmailRequest, check_idempotency_key
from taskapp.errors import PermanentError

OK = {"to": "ann@example.com", "subject": "Hi", "body": "hello"}


def build(**changes: Any) -> EmailRequest:
    args = {**OK, **changes}
    return EmailRequest.build(args.pop("to"), args.pop("subject"), **args)


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"to": "not an address"}, InvalidAddress, "to[0]"),
        ({"to": ["ann@example.com", "bob@@example.com"]}, InvalidAddress, "to[1]"),
        ({"cc": "a@b.com, c@d.com"}, InvalidAddress, "cc[0]"),
        ({"bcc": ["x@localhost"]}, InvalidAddress, "bcc[0]"),
        ({"reply_to": 42}, InvalidAddress, "reply_to"),
        ({"to": [], "cc": None, "bcc": []}, NoRecipients, "to"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, HeaderInjection, "subject"),
        ({"to": "Ann\n <ann@example.com>"}, HeaderInjection, "to[0]"),
        ({"headers": {"X-Tag": "a\nBcc: v@example.com"}}, HeaderInjection, "headers['X-Tag']"),
        ({"headers": {"X Bad:Name": "v"}}, HeaderInjection, "headers['X Bad:Name']"),
        ({"headers": {"Bcc": "v@example.com"}}, EmailInputError, "headers['Bcc']"),
        (
            {"attachments": [{"filename": "a\r\n.txt", "content": ""}]},
            HeaderInjection,
            "attachments[0].filename",
        ),
        ({"attachments": [{"filename": "a.txt"}]}, AttachmentError, "attachments[0]"),
        (
            {"attachments": [{"filename": "a.txt", "content": "", "s3_key": "k"}]},
            AttachmentError,
            "attachments[0]",
        ),
        ({"attachments": [{"content": "aGk="}]}, AttachmentError, "attachments[0].filename"),
        ({"body": None}, EmailInputError, "body"),
        ({"template": "welcome"}, EmailInputError, "template"),
        ({"context": ["not", "a", "dict"]}, EmailInputError, "context"),
    ],
)
def test_bad_argument_is_a_permanent_error_naming_its_field(
    changes: dict[str, Any], error: type[Exception], field: str
) -> None:
    # when the request is built with one bad argument
    with pytest.raises(error) as caught:
        build(**changes)
    # then the error is permanent, of its specific kind, and says which field
    assert isinstance(caught.value, PermanentError)
    assert caught.value.field == field  # type: ignore[attr-defined]
    assert str(caught.value).startswith(f"{field}: ")


def test_good_request_keeps_display_names_and_dedups_envelope_recipients() -> None:
    # given unicode display names, an IDN domain and a recipient listed twice
    request = build(
        to=["Zoë Müller <zoe@example.com>", "Jörg <jorg@bücher.example>"],
        cc="ZOE@example.com",
        bcc=["audit@example.com"],
    )
    # then names survive, the domain is in its ASCII form, and the envelope lists each once
    assert request.to[0].display_name == "Zoë Müller"
    assert request.to[1].domain == "xn--bcher-kva.example"
    assert [a.addr_spec for a in request.recipients] == [
        "zoe@example.com",
        "jorg@xn--bcher-kva.example",
        "audit@example.com",
    ]


def test_bcc_alone_is_enough() -> None:
    request = build(to=None, bcc="audit@example.com")
    assert [a.addr_spec for a in request.recipients] == ["audit@example.com"]


@pytest.mark.parametrize("key", ["", "x" * 256, "a\nb", 7])
def test_bad_idempotency_key_is_refused(key: Any) -> None:
    with pytest.raises(EmailInputError, match="^idempotency_key: "):
        check_idempotency_key(key)


def test_inline_attachment_over_the_limit_is_refused_before_sending() -> None:
    from taskapp.email.attachments import load
    from taskapp.email.request import AttachmentSpec

    # given an inline attachment one byte over a 1 KiB limit
    spec = AttachmentSpec("big.bin", content=base64.b64encode(b"x" * 1025).decode())
    # when it is loaded
    with pytest.raises(AttachmentTooLarge, match=r"^attachments\[0\]: 1025 bytes .* 1024 bytes"):
        load((spec,), bucket="unused", max_bytes=1024, s3=None)


def test_inline_attachment_that_is_not_base64_is_refused() -> None:
    from taskapp.email.attachments import load
    from taskapp.email.request import AttachmentSpec

    with pytest.raises(AttachmentError, match=r"^attachments\[0\]\.content: is not valid base64"):
        load((AttachmentSpec("a.txt", content="%%%"),), bucket="b", max_bytes=1024, s3=None)
