"""SMTP URL settings, SES error translation and the bulk pacing plan (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskapp.email.bulk import BulkRecipient, parse_recipients, plan
from taskapp.email.errors import (
    BackendMisconfigured,
    DeliveryDeferred,
    DeliveryRejected,
    InvalidAddress,
    NoRecipients,
)
from taskapp.email.ses import translate_client_error
from taskapp.email.smtp import SmtpConfig
from taskapp.errors import PermanentError, RetryableError


def test_smtp_url_with_starttls_credentials_and_options() -> None:
    config = SmtpConfig.from_url("smtp://us%40er:p%3Ass@mail.example.com:587?starttls=1&timeout=3")
    assert (config.host, config.port, config.starttls, config.implicit_tls) == (
        "mail.example.com",
        587,
        True,
        False,
    )
    assert (config.username, config.password, config.timeout) == ("us@er", "p:ss", 3.0)
    # the password never shows in a repr (logs, tracebacks)
    assert "p:ss" not in repr(config)


def test_smtp_url_defaults() -> None:
    assert SmtpConfig.from_url("smtp://relay").port == 25
    smtps = SmtpConfig.from_url("smtps://relay?verify=0")
    assert (smtps.port, smtps.implicit_tls, smtps.verify) == (465, True, False)


@pytest.mark.parametrize(
    "url",
    [
        "http://relay",
        "smtp://",
        "smtp://relay?starttls=maybe",
        "smtp://relay?tls=1",
        "smtps://relay?starttls=1",
        "smtp://relay:notaport",
        "smtp://user:topsecret@relay?timeout=soon",
    ],
)
def test_bad_smtp_url_is_a_permanent_error_that_does_not_echo_it(url: str) -> None:
    with pytest.raises(BackendMisconfigured, match="^TASKAPP_SMTP_URL: ") as caught:
        SmtpConfig.from_url(url)
    assert "topsecret" not in str(caught.value)


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendEmail")


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("TooManyRequestsException", 429, DeliveryDeferred),
        ("Throttling", 400, DeliveryDeferred),
        ("LimitExceededException", 400, DeliveryDeferred),
        ("InternalFailure", 500, DeliveryDeferred),
        ("MessageRejected", 400, DeliveryRejected),
        ("BadRequestException", 400, DeliveryRejected),
        ("SendingPausedException", 400, BackendMisconfigured),
    ],
)
def test_ses_errors_map_to_retryable_or_permanent(code: str, status: int, kind: type) -> None:
    error = translate_client_error(client_error(code, status))
    assert type(error) is kind
    assert isinstance(error, RetryableError if kind is DeliveryDeferred else PermanentError)
    assert code in str(error)


def test_bulk_plan_paces_chunks_at_the_send_rate() -> None:
    people = [BulkRecipient(i, f"u{i}@example.com") for i in range(7)]
    # at 2 emails/s, chunks of 2 (one second's worth) are due at 0, 1, 2 and 3 s
    chunks = plan(people, rate=2)
    assert [len(c.recipients) for c in chunks] == [2, 2, 2, 1]
    assert [c.countdown for c in chunks] == [0, 1, 2, 3]
    # a bigger chunk is spaced further apart, so the average rate stays the same
    assert [c.countdown for c in plan(people, rate=2, chunk_size=4)] == [0, 2]
    # a slow rate still makes progress, one recipient at a time
    assert [c.countdown for c in plan(people[:3], rate=0.5)] == [0, 2, 4]


def test_bulk_recipients_are_checked_and_may_carry_their_own_context() -> None:
    parsed = parse_recipients(["a@example.com", {"to": "b@example.com", "context": {"n": 1}}])
    assert parsed[1] == BulkRecipient(1, "b@example.com", {"n": 1})
    with pytest.raises(InvalidAddress, match=r"^recipients\[1\]: "):
        parse_recipients(["a@example.com", "nope"])
    with pytest.raises(NoRecipients, match="^recipients: "):
        parse_recipients([])


def test_bulk_is_checked_once_up_front() -> None:
    from taskapp.email.bulk import prepare
    from taskapp.email.errors import EmailInputError, MissingTemplateVariable

    context = {"steps": [], "account_url": "u"}
    people, shared, options = prepare(
        ["a@example.com", {"to": "b@example.com", "context": {"name": "B"}}],
        None,
        {"template": "welcome", "context": {**context, "name": "all"}},
    )
    assert len(people) == 2
    assert shared["name"] == "all"
    assert options == {"template": "welcome"}
    # a variable missing for the first recipient fails the bulk, not each email
    with pytest.raises(MissingTemplateVariable, match="'name' is undefined"):
        prepare(["a@example.com"], None, {"template": "welcome", "context": context})
    with pytest.raises(EmailInputError, match=r"^options: .*\['to'\]"):
        prepare(["a@example.com"], "s", {"body": "b", "to": "x@example.com"})
