"""Build the MIME message: multipart/alternative text + HTML, attachments, RFC 2047 headers.

Before the message is written, every header of every part is folded as the generator will fold
it, and a header that would come out as more than one header line is refused (``HeaderInjection``
naming the field). Python 3.11.7 and 3.12.1 write such a header out (an encoded word that
decodes to CR LF); 3.13 raises ``email.errors.HeaderWriteError``, which is mapped to the same
error. Together with the checks in ``taskapp.email.request`` no interpreter can be talked into
writing a header we did not set.
"""

from __future__ import annotations

import email.errors
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from taskapp.email.attachments import Attachment
from taskapp.email.errors import EmailInputError, HeaderInjection, InvalidAddress, MessageTooLarge
from taskapp.email.request import EmailRequest, check_header_value, parse_address
from taskapp.email.templates import Rendered

__all__ = ["Composed", "compose", "sender_address", "check_size", "subject_for"]

# Non-ASCII bodies go out quoted-printable/base64, so any SMTP server takes them (no 8BITMIME).
_POLICY = policy.SMTP.clone(cte_type="7bit")
# Non-ASCII local parts need SMTPUTF8; headers then carry raw UTF-8.
_UTF8_POLICY = policy.SMTPUTF8.clone(cte_type="7bit")
# A line break inside a folded header that does not start a continuation line, or a NUL: what
# CPython 3.13's generator refuses (email.generator.NEWLINE_WITHOUT_FWSP), written for bytes.
_UNFOLDED_BREAK = re.compile(rb"\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n|\x00")
#: The request field behind each header the builder writes (custom ones are ``headers[...]``).
_HEADER_FIELDS = {
    "from": "TASKAPP_MAIL_FROM",
    "to": "to",
    "cc": "cc",
    "reply-to": "reply_to",
    "subject": "subject",
    "message-id": "idempotency_key",
}


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
    subject = subject_for(request, rendered)
    text, html = (rendered.text, rendered.html) if rendered else (request.body, request.html)
    addresses = (sender, *request.recipients, *request.reply_to)
    smtputf8 = not all(a.username.isascii() for a in addresses)
    msg = EmailMessage(policy=_UTF8_POLICY if smtputf8 else _POLICY)
    message_id = _message_id(idempotency_key, sender.domain)
    fields = {
        **_HEADER_FIELDS,
        **{name.lower(): f"headers[{name!r}]" for name, _ in request.headers},
    }
    listed = [("To", request.to), ("Cc", request.cc), ("Reply-To", request.reply_to)]
    headers: list[tuple[str, object]] = [("From", sender)]
    headers += [(name, value) for name, value in listed if value]
    headers += [("Subject", subject), ("Date", format_datetime(datetime.now(UTC)))]
    headers += [("Message-ID", message_id), *request.headers]
    for name, value in headers:
        _set_header(msg, name, value, fields.get(name.lower(), "message"))
    _set_bodies(msg, text, html)
    for index, attachment in enumerate(attachments):
        _attach(msg, index, attachment)
    _check_written(msg, fields)
    return Composed(
        message=msg,
        data=_as_bytes(msg, fields),
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


def subject_for(request: EmailRequest, rendered: Rendered | None) -> str:
    """The subject to send: the request's, else the template's, checked as a header value."""
    if request.subject is not None:
        return check_header_value("subject", request.subject)
    subject = rendered.subject if rendered else None
    if not subject:
        raise EmailInputError.at("subject", "missing: pass subject or use a template that has one")
    try:
        return check_header_value("subject", subject)
    except EmailInputError as exc:
        # The template is ours; what it interpolated (a context value) is the culprit.
        reason = str(exc).split(": ", 1)[-1]
        raise type(exc).at(
            "subject",
            f"as rendered from template {request.template!r} {reason}; check its context values",
        ) from None


def _set_header(msg: EmailMessage, name: str, value: object, field: str) -> None:
    try:
        msg[name] = value
    except ValueError as exc:
        # The email package's own refusal ("Header values may not contain linefeed or carriage
        # return characters", also raised for U+0085 and U+2028), which would be a crash.
        raise HeaderInjection.at(field, f"cannot be written as a header: {exc}") from None


def _attach(msg: EmailMessage, index: int, attachment: Attachment) -> None:
    maintype, subtype = attachment.content_type.split("/", 1)
    try:
        msg.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    except ValueError as exc:
        raise HeaderInjection.at(
            f"attachments[{index}].filename", f"cannot be written as a header: {exc}"
        ) from None


def _check_written(msg: EmailMessage, fields: dict[str, str]) -> None:
    """Refuse any header the generator would write as more than one header line."""
    linesep = msg.policy.linesep.encode()
    attachment_of = {id(part): i for i, part in enumerate(msg.iter_attachments())}
    for part in msg.walk():
        index = attachment_of.get(id(part))
        for name, value in part.raw_items():
            folded = msg.policy.fold_binary(name, value)
            if folded.endswith(linesep) and not _UNFOLDED_BREAK.search(folded[: -len(linesep)]):
                continue
            field = (
                fields.get(name.lower(), "message")
                if index is None
                else _attachment_field(index, name)
            )
            raise HeaderInjection.at(
                field, f"would be written as more than one {name} header line (header injection)"
            )


def _attachment_field(index: int, header: str) -> str:
    attribute = {"content-disposition": ".filename", "content-type": ".content_type"}
    return f"attachments[{index}]{attribute.get(header.lower(), '')}"


def _as_bytes(msg: EmailMessage, fields: dict[str, str]) -> bytes:
    # 3.13 (and 3.12.5+, 3.11.10+) refuse such a header themselves; looked up at call time.
    write_error = getattr(email.errors, "HeaderWriteError", None)
    refusals: tuple[type[Exception], ...] = (write_error,) if write_error else ()
    try:
        return msg.as_bytes()
    except refusals as exc:
        # "folded header contains newline: 'Subject: ...'": the header's name follows the colon.
        named = re.search(r""": ["']([!-9;-~]+):""", str(exc))
        field = fields.get(named.group(1).lower(), "message") if named else "message"
        raise HeaderInjection.at(field, f"{exc} (header injection)") from None


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
