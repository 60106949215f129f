"""Templates and MIME composition: parts, escaping, encoded headers, and the size limit."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.headerregistry import Address
from typing import Any

import pytest

from taskapp.email.attachments import Attachment
from taskapp.email.compose import check_size, compose, sender_address
from taskapp.email.errors import (
    EmailInputError,
    InvalidAddress,
    MessageTooLarge,
    MissingTemplateVariable,
    UnknownTemplate,
)
from taskapp.email.request import EmailRequest
from taskapp.email.templates import render, template_names

SENDER = Address("Tâskapp Notifications", "noreply", "example.com")
WELCOME = {"name": "Zoë <b>", "steps": ["Verify", "Invite"], "account_url": "https://x.example/a"}


def parse(data: bytes) -> Any:
    return message_from_bytes(data, policy=policy.default)


def test_welcome_template_renders_subject_text_and_escaped_html() -> None:
    # when the demo template is rendered with markup in a context value
    rendered = render("welcome", WELCOME)
    # then the subject is one line, the text part is verbatim and the HTML part is escaped
    assert rendered.subject == "Welcome to taskapp, Zoë <b>"
    assert rendered.text
    assert "Hello Zoë <b>," in rendered.text
    assert rendered.html
    assert "Hello Zoë &lt;b&gt;," in rendered.html
    assert "welcome" in template_names()


def test_missing_context_variable_is_permanent_and_named() -> None:
    with pytest.raises(MissingTemplateVariable, match="^context: .*'account_url' is undefined"):
        render("welcome", {"name": "Ann", "steps": []})


@pytest.mark.parametrize("name", ["nope", "../templates", "Welcome"])
def test_unknown_template_is_permanent(name: str) -> None:
    with pytest.raises(UnknownTemplate, match="^template: "):
        render(name, {})


def test_templated_message_is_multipart_alternative_with_attachment_and_encoded_headers() -> None:
    # given a templated request with unicode names and an attachment
    request = EmailRequest.build(
        "Zoë Müller <zoe@example.com>",
        template="welcome",
        context=WELCOME,
        bcc="audit@example.com",
        reply_to="Support Désk <help@example.com>",
        headers={"X-Campaign": "spring"},
    )
    pdf = Attachment("résumé.pdf", "application/pdf", b"%PDF-1.4 \x00\xff binary")
    # when it is composed
    composed = compose(
        request, render("welcome", WELCOME), [pdf], sender=SENDER, idempotency_key="k1"
    )
    # then the wire form is 7-bit and non-ASCII headers are RFC 2047 encoded
    assert composed.data.isascii()
    assert b"Subject: Welcome to taskapp, =?utf-8?q?Zo=C3=AB?=" in composed.data
    assert b"From: =?utf-8?" in composed.data
    # and it parses back to mixed(alternative(text, html), pdf) with every value intact
    msg = parse(composed.data)
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attached = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, html = alternative.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert "Hello Zoë <b>," in text.get_content()
    assert "Zoë &lt;b&gt;" in html.get_content()
    assert attached.get_filename() == "résumé.pdf"
    assert attached.get_content() == pdf.data
    assert str(msg["Subject"]) == "Welcome to taskapp, Zoë <b>"
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["From"].addresses[0].display_name == "Tâskapp Notifications"
    assert msg["Reply-To"].addresses[0].display_name == "Support Désk"
    assert msg["X-Campaign"] == "spring"
    # and Bcc is in the envelope only
    assert "Bcc" not in msg
    assert composed.recipients == ("zoe@example.com", "audit@example.com")


def test_message_id_is_stable_per_idempotency_key() -> None:
    request = EmailRequest.build("a@example.com", "s", body="b")
    first, again, other = (
        compose(request, None, [], sender=SENDER, idempotency_key=key).message_id
        for key in ("k", "k", "other")
    )
    assert first == again != other
    assert first.endswith("@example.com>")


def test_explicit_subject_beats_the_template_and_a_missing_subject_is_an_error() -> None:
    request = EmailRequest.build("a@example.com", "Mine", template="welcome", context=WELCOME)
    composed = compose(request, render("welcome", WELCOME), [], sender=SENDER, idempotency_key="k")
    assert parse(composed.data)["Subject"] == "Mine"
    untitled = EmailRequest.build("a@example.com", body="b")
    with pytest.raises(EmailInputError, match="^subject: missing"):
        compose(untitled, None, [], sender=SENDER, idempotency_key="k")


def test_text_only_and_html_only_messages_are_single_part() -> None:
    text = compose(
        EmailRequest.build("a@example.com", "s", body="plain"),
        None,
        [],
        sender=SENDER,
        idempotency_key="k",
    )
    html = compose(
        EmailRequest.build("a@example.com", "s", html="<p>x</p>"),
        None,
        [],
        sender=SENDER,
        idempotency_key="k",
    )
    assert parse(text.data).get_content_type() == "text/plain"
    assert parse(html.data).get_content_type() == "text/html"


def test_message_over_the_provider_limit_is_refused() -> None:
    composed = compose(
        EmailRequest.build("a@example.com", "s", body="x" * 5000),
        None,
        [],
        sender=SENDER,
        idempotency_key="k",
    )
    check_size(composed, 10_000, "smtp server")
    with pytest.raises(MessageTooLarge, match=r"^message: \d+ bytes is over the ses limit of 1000"):
        check_size(composed, 1000, "ses")


def test_sender_setting_must_be_an_address() -> None:
    assert sender_address("taskapp <noreply@taskapp.local>").domain == "taskapp.local"
    with pytest.raises(InvalidAddress, match="^TASKAPP_MAIL_FROM: "):
        sender_address("nobody")
