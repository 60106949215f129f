"""SMTP delivery against a real aiosmtpd server: TLS, AUTH, reuse, reconnect, and error kinds."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from config.settings import load_settings
from taskapp.email import service
from taskapp.email.errors import (
    AttachmentError,
    AttachmentTooLarge,
    BackendMisconfigured,
    DeliveryDeferred,
    DeliveryRejected,
    MessageTooLarge,
)
from taskapp.email.request import EmailRequest
from tests.email.outbox import use_smtp
from tests.email.smtp_server import TestSMTPServer

#: The service claims each send in the idempotency ledger, in the session database.
pytestmark = pytest.mark.usefixtures("migrated_db")

Factory = Callable[..., TestSMTPServer]


def send(request: EmailRequest | None = None, key: str | None = None) -> dict[str, Any]:
    """One delivery through the service, from this thread (no worker)."""
    request = request or EmailRequest.build("ann@example.com", "Hello", body="Hi Ann")
    return service.send(request, idempotency_key=key or uuid.uuid4().hex, lease=60)


def test_starttls_and_auth_deliver_and_report_the_queue_id(smtp_server: TestSMTPServer) -> None:
    # when one email is sent to a server that requires STARTTLS and AUTH
    result = send()
    # then it arrived over TLS from an authenticated session
    (received,) = smtp_server.received
    assert received.tls
    assert received.authenticated
    assert received.rcpt_tos == ["ann@example.com"]
    assert received.message["Subject"] == "Hello"
    # and the result carries the Message-ID and the server's queue id
    assert result["backend"] == "smtp"
    assert result["message_id"] == received.message["Message-ID"]
    assert result["provider_message_id"]
    assert len(result["provider_message_id"]) == 12


def test_implicit_tls_smtps(smtp_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_factory(tls="implicit")
    use_smtp(monkeypatch, server)
    send()
    assert [r.tls for r in server.received] == [True]


def test_one_connection_is_reused_and_a_stale_one_is_replaced(
    smtp_server: TestSMTPServer,
) -> None:
    # given two sends on one connection
    send()
    send()
    assert smtp_server.connections == 1
    # when the server restarts (the cached connection is now dead) and we send again
    smtp_server.restart()
    send()
    # then the send reconnected and delivered
    assert len(smtp_server.received) == 3
    assert smtp_server.connections == 2


def test_4xx_is_retryable_and_5xx_is_permanent(smtp_server: TestSMTPServer) -> None:
    smtp_server.answer("451 4.3.0 Try again later", "550 5.7.1 Rejected by policy")
    with pytest.raises(DeliveryDeferred, match="451 4.3.0 Try again later"):
        send()
    with pytest.raises(DeliveryRejected, match="550 5.7.1 Rejected by policy"):
        send()
    # and a later send on the same server still works
    send()
    assert smtp_server.attempts == 3
    assert len(smtp_server.received) == 1


def test_wrong_password_is_a_configuration_error(
    smtp_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_factory()
    monkeypatch.setenv("TASKAPP_SMTP_URL", server.url(password="wrong horse"))
    with pytest.raises(BackendMisconfigured, match="authentication failed: 535") as caught:
        send()
    assert "wrong horse" not in str(caught.value)


def test_untrusted_certificate_is_a_configuration_error(
    smtp_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_factory()
    # when the client trusts only the system CAs, not the server's self-signed certificate
    monkeypatch.setenv("TASKAPP_SMTP_URL", server.url().split("&cafile=")[0])
    with pytest.raises(BackendMisconfigured, match="certificate"):
        send()
    assert server.received == []


def test_nobody_listening_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskapp.local.net import free_port

    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("TASKAPP_SMTP_URL", f"smtp://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(DeliveryDeferred, match="ConnectionRefusedError"):
        send()


def test_message_over_the_server_size_limit_is_permanent(
    smtp_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_factory(size_limit=2000)
    use_smtp(monkeypatch, server)
    with pytest.raises(MessageTooLarge, match=r"^message: \d+ bytes is over the smtp server limit"):
        send(EmailRequest.build("ann@example.com", "Big", body="x" * 3000))
    assert server.attempts == 0


def test_multipart_attachments_and_unicode_arrive_intact(
    smtp_server: TestSMTPServer, s3: Any, settings: Any, provisioned: Any
) -> None:
    # given an S3 attachment, an inline one, and unicode names everywhere
    key = f"email-tests/{uuid.uuid4().hex}/data.csv"
    csv = "name,city\nZoë,Zürich\n".encode()
    s3.put_object(Bucket=settings.bucket, Key=key, Body=csv)
    png = bytes(range(256)) * 4
    request = EmailRequest.build(
        ["Zoë Müller <zoe@example.com>", "bob@example.com"],
        "Grüße aus Köln – ✓",
        body="Hallo Zoë,\nanbei die Daten.\n",
        html="<p>Hallo <b>Zoë</b></p>",
        cc="Ça Va <cava@example.com>",
        bcc="audit@example.com",
        attachments=[
            {"filename": "daten.csv", "s3_key": key},
            {"filename": "bild-ü.png", "content": base64.b64encode(png).decode()},
        ],
    )
    # when it is sent
    send(request)
    # then the server got it for all four recipients, Bcc only in the envelope
    (received,) = smtp_server.received
    assert sorted(received.rcpt_tos) == sorted(
        ["zoe@example.com", "bob@example.com", "cava@example.com", "audit@example.com"]
    )
    msg = received.message
    assert "Bcc" not in msg
    assert "audit@example.com" not in received.data.decode()
    # and subject, display names, both alternatives and both attachments are intact
    assert msg["Subject"] == "Grüße aus Köln – ✓"
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["Cc"].addresses[0].display_name == "Ça Va"
    assert msg.get_body(("plain",)).get_content() == "Hallo Zoë,\nanbei die Daten.\n"
    assert msg.get_body(("html",)).get_content() == "<p>Hallo <b>Zoë</b></p>\n"
    files = {
        a.get_filename(): (a.get_content_type(), a.get_payload(decode=True))
        for a in msg.iter_attachments()
    }
    assert files == {"daten.csv": ("text/csv", csv), "bild-ü.png": ("image/png", png)}


def test_s3_attachment_problems_are_permanent_and_named(
    smtp_server: TestSMTPServer,
    s3: Any,
    settings: Any,
    provisioned: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKAPP_EMAIL_MAX_ATTACHMENT_BYTES", "1000")
    big = f"email-tests/{uuid.uuid4().hex}/big.bin"
    s3.put_object(Bucket=settings.bucket, Key=big, Body=b"x" * 1001)

    def with_attachment(s3_key: str) -> EmailRequest:
        attachment = {"filename": "f.bin", "s3_key": s3_key}
        return EmailRequest.build("ann@example.com", "s", body="b", attachments=[attachment])

    with pytest.raises(AttachmentTooLarge, match=r"^attachments\[0\]: 1001 bytes .* 1000"):
        send(with_attachment(big))
    with pytest.raises(AttachmentError, match=r"^attachments\[0\]\.s3_key: .* does not exist"):
        send(with_attachment("email-tests/missing.bin"))
    assert smtp_server.attempts == 0


def test_the_same_key_is_delivered_once(smtp_server: TestSMTPServer) -> None:
    # when the same idempotency key is sent twice
    first = send(key="order-42:receipt")
    second = send(key="order-42:receipt")
    # then the server got one message and both calls report the same send
    assert len(smtp_server.received) == 1
    assert first == second
    assert load_settings().email_backend == "smtp"


def test_non_ascii_mailbox_goes_out_with_smtputf8(smtp_server: TestSMTPServer) -> None:
    # given a recipient whose local part is not ASCII (RFC 6531)
    request = EmailRequest.build("Jürgen <jürgen@example.com>", "Grüße", body="Hallo")
    # when it is sent to a server that offers SMTPUTF8
    send(request)
    # then the envelope and the header carry the UTF-8 address
    (received,) = smtp_server.received
    assert received.rcpt_tos == ["jürgen@example.com"]
    assert received.message["To"].addresses[0].addr_spec == "jürgen@example.com"
    assert received.message["Subject"] == "Grüße"
