"""The specific ways an email can fail: bad input and refusals (permanent), or transient trouble.

Every permanent error's message starts with the field it is about (``to: ...``,
``attachments[0]: ...``), so a FAILURE result or a dead letter says what to fix. Constructors take
the message as their only positional argument, so Celery can rebuild them from a stored result.
"""

from __future__ import annotations

from typing import Self

from taskapp.errors import PermanentError, RetryableError

__all__ = [
    "EmailInputError",
    "InvalidAddress",
    "HeaderInjection",
    "NoRecipients",
    "TooManyRecipients",
    "AttachmentError",
    "AttachmentTooLarge",
    "MessageTooLarge",
    "TemplateError",
    "UnknownTemplate",
    "MissingTemplateVariable",
    "DeliveryRejected",
    "BackendMisconfigured",
    "DeliveryDeferred",
    "SendInProgress",
]


class EmailInputError(PermanentError):
    """An email request that can never be sent as given; ``field`` names the culprit."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field or message.split(":", 1)[0]

    @classmethod
    def at(cls, field: str, reason: str) -> Self:
        """The error for ``field``, with a message ``"<field>: <reason>"``."""
        return cls(f"{field}: {reason}", field)


class InvalidAddress(EmailInputError):
    """An address that does not parse or is not a valid mailbox."""


class HeaderInjection(EmailInputError):
    """A line break or NUL in a header value, as written or once its RFC 2047 encoded words are
    decoded, or a bad header name: it could smuggle in headers (or a body) of its own."""


class NoRecipients(EmailInputError):
    """``to``, ``cc`` and ``bcc`` are all empty."""


class TooManyRecipients(EmailInputError):
    """More recipients than the provider takes in one message."""


class AttachmentError(EmailInputError):
    """An attachment entry that is malformed or whose S3 object does not exist."""


class AttachmentTooLarge(AttachmentError):
    """One attachment is over ``TASKAPP_EMAIL_MAX_ATTACHMENT_BYTES``."""


class MessageTooLarge(EmailInputError):
    """The whole encoded message is over the provider's size limit."""


class TemplateError(EmailInputError):
    """A template that cannot be rendered with the given context."""


class UnknownTemplate(TemplateError):
    """No template of that name in ``taskapp/email/templates``."""


class MissingTemplateVariable(TemplateError):
    """The template uses a variable the context does not provide."""


class DeliveryRejected(PermanentError):
    """The provider refused the message for good (SMTP 5xx, SES ``MessageRejected``)."""


class BackendMisconfigured(PermanentError):
    """The email backend's settings cannot work (bad URL, TLS verification failed, no STARTTLS)."""


class DeliveryDeferred(RetryableError):
    """The provider could not take the message now (4xx, throttling, connection trouble)."""


class SendInProgress(RetryableError):
    """Another delivery of the same idempotency key holds the send; try again after it ends."""
