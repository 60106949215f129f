"""email.send and email.send_bulk through SQS and the session worker, against real servers."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import pytest

from taskapp.email.errors import (
    AttachmentTooLarge,
    DeliveryRejected,
    HeaderInjection,
    InvalidAddress,
    MissingTemplateVariable,
    NoRecipients,
    UnknownTemplate,
)
from taskapp.email.tasks import send_bulk, send_email
from taskapp.sqs.deadletter import read_reason
from tests.email.outbox import eml_files, ses_sent
from tests.email.smtp_server import TestSMTPServer
from tests.support.queues import drain, queue_url
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WELCOME = {"name": "Zoë", "steps": ["Verify"], "account_url": "https://x.example/a"}


def outcome(result: Any) -> Any:
    """The task's return value, or its exception, once it has finished."""
    return result.get(timeout=30, interval=0.05, propagate=False)


def test_send_delivers_and_returns_the_provider_id(
    worker: Any, smtp_server: TestSMTPServer
) -> None:
    # when a templated email is enqueued
    result = send_email.delay("Zoë Müller <zoe@example.com>", template="welcome", context=WELCOME)
    sent = outcome(result)
    # then the worker delivered it over STARTTLS + AUTH, and the result names the message
    (received,) = smtp_server.received
    assert received.tls
    assert received.authenticated
    assert received.message["Subject"] == "Welcome to taskapp, Zoë"
    assert received.message.get_content_type() == "multipart/alternative"
    assert result.status == "SUCCESS"
    assert sent["message_id"] == received.message["Message-ID"]
    assert sent["provider_message_id"]


def test_451_twice_then_success_delivers_exactly_once(
    worker: Any, smtp_server: TestSMTPServer
) -> None:
    # given a server that answers the first two attempts with 451
    smtp_server.answer("451 4.3.0 Try again later", "451 4.3.0 Try again later")
    # when an email is sent
    result = send_email.delay("ann@example.com", "Third time lucky", body="hi")
    sent = outcome(result)
    # then the third attempt delivered it, and only once
    assert result.status == "SUCCESS", sent
    assert smtp_server.attempts == 3
    assert len(smtp_server.received) == 1
    assert sent["message_id"] == smtp_server.received[0].message["Message-ID"]


def test_550_fails_after_one_attempt_and_is_dead_lettered(
    worker: Any, smtp_server: TestSMTPServer, sqs: Any, settings: Any
) -> None:
    # given a server that refuses the message for good
    smtp_server.answer("550 5.7.1 Message rejected by policy")
    # when an email is sent
    result = send_email.delay("ann@example.com", "Nope", body="hi")
    error = outcome(result)
    # then it failed permanently after a single attempt
    assert result.status == "FAILURE"
    assert isinstance(error, DeliveryRejected)
    assert "550 5.7.1" in str(error)
    assert smtp_server.attempts == 1
    assert smtp_server.received == []
    # and the message sits in the email DLQ with the reason
    letters = [
        read_reason(m.get("MessageAttributes", {}))
        for m in drain(sqs, queue_url(sqs, settings, "email-dlq"), wait=1)
    ]
    mine = [letter for letter in letters if letter and letter.task_id == result.id]
    assert len(mine) == 1
    assert (mine[0].reason, mine[0].error_type, mine[0].attempts) == (
        "permanent",
        "DeliveryRejected",
        1,
    )


def test_forced_redelivery_of_a_sent_email_delivers_nothing_more(
    worker: Any, app: Any, sqs: Any, settings: Any, smtp_server: TestSMTPServer
) -> None:
    task_id = str(uuid.uuid4())
    args, kwargs = ("ann@example.com", "Once"), {"body": "hi"}
    # given an email that was sent
    first = outcome(send_email.apply_async(args, kwargs, task_id=task_id))
    # when the very same task message is delivered again
    send_email.apply_async(args, kwargs, task_id=task_id)
    # (its result is SUCCESS already, so wait for the worker to consume and ack the copy)
    wait_for(
        lambda: queue_depth(sqs, queue_url(sqs, settings, "email")) == 0,
        "the copy to be consumed and acknowledged",
        interval=0.2,
    )
    # then the server still holds one message and the result is the first send's
    assert len(smtp_server.received) == 1
    assert app.AsyncResult(task_id).result == first


def queue_depth(sqs: Any, url: str) -> int:
    """Messages in a queue: waiting, in flight, or delayed."""
    names = [
        "ApproximateNumberOf" + n for n in ("Messages", "MessagesNotVisible", "MessagesDelayed")
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def test_same_idempotency_key_under_different_task_ids_sends_once(
    worker: Any, smtp_server: TestSMTPServer
) -> None:
    key = f"order-{uuid.uuid4().hex}:receipt"
    results = [
        outcome(send_email.delay("ann@example.com", "Receipt", body="hi", idempotency_key=key))
        for _ in range(2)
    ]
    assert len(smtp_server.received) == 1
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"to": "ann@@example.com"}, InvalidAddress, "to[0]"),
        ({"to": []}, NoRecipients, "to"),
        ({"subject": "hi\r\nBcc: x@example.com"}, HeaderInjection, "subject"),
        # Issue 13: an encoded word decoding to CR LF, and line breaks the email package
        # itself refused with a bare ValueError (a crash, not a permanent failure).
        (
            {"subject": "=?utf-8?q?Invoice=0D=0AContent-Type:_text/html=0D=0A=0D=0APay?="},
            HeaderInjection,
            "subject",
        ),
        ({"subject": "hi\x85there"}, HeaderInjection, "subject"),
        ({"subject": "hi\u2028there"}, HeaderInjection, "subject"),
        (
            {
                "subject": None,
                "template": "welcome",
                "body": None,
                "context": {**WELCOME, "name": "=?utf-8?q?Zo=0D=0ABcc:_v@x.org?="},
            },
            HeaderInjection,
            "subject",
        ),
        (
            {"template": "welcome", "context": {"name": "x"}, "body": None},
            MissingTemplateVariable,
            "context",
        ),
        ({"template": "no-such-template", "body": None}, UnknownTemplate, "template"),
        (
            {
                "attachments": [
                    {"filename": "big.bin", "content": base64.b64encode(b"x" * 2048).decode()}
                ]
            },
            AttachmentTooLarge,
            "attachments[0]",
        ),
    ],
)
def test_each_validation_failure_fails_with_its_error(
    worker: Any,
    smtp_server: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    error: type,
    field: str,
) -> None:
    monkeypatch.setenv("TASKAPP_EMAIL_MAX_ATTACHMENT_BYTES", "1024")
    args = {"to": "ann@example.com", "subject": "s", "body": "b", **kwargs}
    result = send_email.delay(args.pop("to"), args.pop("subject"), **args)
    failure = outcome(result)
    assert result.status == "FAILURE"
    assert type(failure) is error
    assert str(failure).startswith(f"{field}: ")
    assert smtp_server.attempts == 0


def test_ses_on_moto_sends_the_raw_message(worker: Any, ses: Any, settings: Any) -> None:
    # when an email with an attachment is sent through SES
    attachment = {"filename": "note.txt", "content": base64.b64encode(b"hello").decode()}
    result = send_email.delay(
        "Zoë <zoe@example.com>",
        "Grüße",
        body="Hallo",
        bcc="audit@example.com",
        attachments=[attachment],
    )
    sent = outcome(result)
    assert result.status == "SUCCESS", sent
    # then moto holds that message under the provider id we returned, Bcc in the envelope only
    (stored,) = ses_sent(settings, sent["provider_message_id"])
    assert sent["backend"] == "ses"
    assert stored["source"] == "orders@shop.example.com"
    assert {"zoe@example.com", "audit@example.com"} <= set(stored["destinations"])
    assert "Message-ID: " + sent["message_id"] in stored["raw_data"]
    assert "audit@example.com" not in stored["raw_data"]
    assert "=?utf-8?" in stored["raw_data"]


def test_ses_message_rejected_is_permanent(
    worker: Any, ses: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a sender whose domain SES has not verified
    monkeypatch.setenv("TASKAPP_MAIL_FROM", "someone@unverified.example.org")
    result = send_email.delay("ann@example.com", "s", body="b")
    error = outcome(result)
    assert result.status == "FAILURE"
    assert isinstance(error, DeliveryRejected)
    assert "MessageRejected" in str(error)


def test_file_backend_writes_an_eml(
    worker: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "file")
    monkeypatch.setenv("TASKAPP_MAIL_DIR", str(tmp_path))
    sent = outcome(send_email.delay("ann@example.com", "On disk", body="b"))
    (eml,) = eml_files(tmp_path)
    assert eml.stem == sent["provider_message_id"]
    assert f"Message-ID: {sent['message_id']}".encode() in eml.read_bytes()


def test_bulk_fans_out_one_email_per_recipient_at_the_send_rate(
    worker: Any, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a send rate of 2/s: three recipients make two chunks, the second 1 s later
    monkeypatch.setenv("TASKAPP_EMAIL_SEND_RATE", "2")
    recipients = [
        "a@example.com",
        {"to": "Bé <b@example.com>", "context": {"name": "Bé"}},
        "c@example.com",
    ]
    # when a templated bulk send is enqueued
    result = send_bulk.delay(recipients, template="welcome", context=WELCOME)
    planned = outcome(result)
    assert planned == {"recipients": 3, "chunks": 2, "last_countdown": 1.0}
    # then each recipient gets their own email, personalised where asked
    wait_for(lambda: len(smtp_server.received) == 3, "three emails at the SMTP server")
    by_rcpt = {r.rcpt_tos[0]: r.message for r in smtp_server.received}
    assert sorted(by_rcpt) == ["a@example.com", "b@example.com", "c@example.com"]
    assert by_rcpt["b@example.com"]["Subject"] == "Welcome to taskapp, Bé"
    assert by_rcpt["a@example.com"]["Subject"] == "Welcome to taskapp, Zoë"


def test_bulk_with_a_bad_recipient_fails_before_sending_anything(
    worker: Any, smtp_server: TestSMTPServer
) -> None:
    result = send_bulk.delay(["a@example.com", "nope"], "s", body="b")
    error = outcome(result)
    assert isinstance(error, InvalidAddress)
    assert str(error).startswith("recipients[1]: ")
    assert smtp_server.attempts == 0


def test_demo_sends_a_templated_email_and_finds_its_eml(
    worker: Any, provisioned: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from taskapp.email import demo
    from taskapp.local.mail import MailSink

    # given the local SMTP sink writing into the mail dir, as in `taskapp demo`
    sink = MailSink(tmp_path / "mail").start()
    try:
        monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "smtp")
        monkeypatch.setenv("TASKAPP_SMTP_URL", sink.url)
        monkeypatch.setenv("TASKAPP_MAIL_DIR", str(sink.directory))
        # when the demo runs
        lines = dict(demo.run())
    finally:
        sink.stop()
    # then it points at the .eml the sink wrote: templated, with the attachment
    eml = Path(lines[".eml"])
    assert eml.parent == sink.directory
    assert eml in sink.paths
    (msg,) = sink.messages()
    assert msg["Subject"] == "Welcome to taskapp, Ada"
    assert [a.get_filename() for a in msg.iter_attachments()] == ["orders.csv"]
