"""Amazon SES delivery through the sesv2 ``SendEmail`` API with the raw MIME message."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from taskapp.email.compose import Composed, check_size
from taskapp.email.errors import BackendMisconfigured, DeliveryDeferred, DeliveryRejected
from taskapp.email.smtp import Delivery

__all__ = ["SesBackend", "translate_client_error", "MAX_MESSAGE_BYTES", "MAX_RECIPIENTS"]

#: SES v2 takes raw messages up to 40 MB (after encoding) and 50 recipients per message.
#: https://docs.aws.amazon.com/ses/latest/dg/quotas.html
MAX_MESSAGE_BYTES = 40 * 1024 * 1024
MAX_RECIPIENTS = 50

_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "LimitExceededException",
}
_MISCONFIGURED = {
    "MailFromDomainNotVerifiedException",
    "AccountSuspendedException",
    "SendingPausedException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
}


class SesBackend:
    """Deliver through SES; the client comes from ``taskapp.aws.client("sesv2")``."""

    name = "ses"
    max_recipients: int | None = MAX_RECIPIENTS

    def __init__(self, client: Any) -> None:
        self.client = client

    def send(self, composed: Composed) -> Delivery:
        """Send the raw message to every envelope recipient (Bcc included)."""
        check_size(composed, MAX_MESSAGE_BYTES, "ses")
        try:
            response = self.client.send_email(
                FromEmailAddress=composed.sender,
                # With raw content the Destination is the envelope: every recipient, Bcc included
                # (Bcc is absent from the headers on purpose).
                Destination={"ToAddresses": list(composed.recipients)},
                Content={"Raw": {"Data": composed.data}},
            )
        except ClientError as exc:
            raise translate_client_error(exc) from None
        except (ConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise DeliveryDeferred(f"ses: {exc}") from None
        except BotoCoreError as exc:
            raise DeliveryDeferred(f"ses: {type(exc).__name__}: {exc}") from None
        return Delivery(str(response["MessageId"]))


def translate_client_error(exc: ClientError) -> Exception:
    """The taskapp error for an SES API error: throttling and 5xx retry, refusals do not."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    text = f"ses: {code}: {error.get('Message', '')}"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLED or status == 429 or status >= 500:
        return DeliveryDeferred(text)
    if code in _MISCONFIGURED:
        return BackendMisconfigured(text)
    return DeliveryRejected(text)  # MessageRejected, BadRequestException, InvalidParameterValue
