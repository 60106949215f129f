"""Build the MIME message: multipart/alternative text + HTML, attachments, RFC 2047 headers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from taskapp.email.attachments import Attachment
from taskapp.email.errors import EmailInputError, InvalidAddress, MessageTooLarge
from taskapp.email.request import EmailRequest, parse_address
from taskapp.email.templates import Rendered

__all__ = ["Composed", "compose", "sender_address", "check_size"]

# Non-ASCII bodies go out quoted-printable/base64, so any SMTP server takes them (no 8BITMIME).
_POLICY = policy.SMTP.clone(cte_type="7bit")
# Non-ASCII local parts need SMTPUTF8; headers then carry raw UTF-8.
_UTF8_POLICY = policy.SMTPUTF8.clone(cte_type="7bit")


@dataclass(frozen=True)
class Composed:
    """A message ready for a backend: the MIME object, its bytes, and the SMTP envelope."""

    message: EmailMessage
    data: bytes
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    smtputf8: bool


def sender_address(mail_from: str) -> Address:
    """``TASKAPP_MAIL_FROM`` parsed (a configuration value, so its domain is not policed)."""
    try:
        return parse_address("TASKAPP_MAIL_FROM", mail_from, strict=False)
    except EmailInputError as exc:
        raise InvalidAddress(str(exc), "TASKAPP_MAIL_FROM") from None


def compose(
    request: EmailRequest,
    rendered: Rendered | None,
    attachments: list[Attachment],
    *,
    sender: Address,
    idempotency_key: str,
) -> Composed:
    """The message ``request`` describes, with a Message-ID derived from ``idempotency_key``."""
    subject = request.subject if request.subject is not None else (rendered and rendered.subject)
    if not subject:
        raise EmailInputError.at("subject", "missing: pass subject or use a template that has one")
    text, html = (rendered.text, rendered.html) if rendered else (request.body, request.html)
    addresses = (sender, *request.recipients, *request.reply_to)
    smtputf8 = not all(a.username.isascii() for a in addresses)
    msg = EmailMessage(policy=_UTF8_POLICY if smtputf8 else _POLICY)
    message_id = _message_id(idempotency_key, sender.domain)
    msg["From"] = sender
    if request.to:
        msg["To"] = request.to
    if request.cc:
        msg["Cc"] = request.cc
    if request.reply_to:
        msg["Reply-To"] = request.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id
    for name, value in request.headers:
        msg[name] = value
    _set_bodies(msg, text, html)
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        msg.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return Composed(
        message=msg,
        data=msg.as_bytes(),
        sender=sender.addr_spec,
        recipients=tuple(a.addr_spec for a in request.recipients),
        message_id=message_id,
        smtputf8=smtputf8,
    )


def check_size(composed: Composed, limit: int | None, provider: str) -> None:
    """Raise ``MessageTooLarge`` if the encoded message is over ``provider``'s ``limit``."""
    if limit is not None and len(composed.data) > limit:
        raise MessageTooLarge.at(
            "message", f"{len(composed.data)} bytes is over the {provider} limit of {limit} bytes"
        )


def _set_bodies(msg: EmailMessage, text: str | None, html: str | None) -> None:
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")  # makes it multipart/alternative
    elif html is not None:
        msg.set_content(html, subtype="html")


def _message_id(idempotency_key: str, domain: str) -> str:
    # Stable per key: if a send is ever repeated (a crash between the provider's "accepted" and
    # our record of it), the copies share a Message-ID and receivers can tell.
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"
