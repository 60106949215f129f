"""What a caller asked to send, checked: addresses parsed, headers safe, attachments well-formed.

Everything here is pure (no network); a bad request raises an ``EmailInputError`` subclass whose
message names the field, so it fails once and is never retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from typing import Any

from email_validator import EmailNotValidError, validate_email

from taskapp.email.errors import (
    AttachmentError,
    EmailInputError,
    HeaderInjection,
    InvalidAddress,
    NoRecipients,
)

__all__ = [
    "AttachmentSpec",
    "EmailRequest",
    "parse_address",
    "check_header_value",
    "check_idempotency_key",
]

#: Headers the message builder owns; ``headers=`` may not set them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Sender",
        "Return-Path",
    )
)
# RFC 5322 field names: printable US-ASCII except ":" (33-126 minus 58).
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
MAX_IDEMPOTENCY_KEY = 255


def check_header_value(field_name: str, value: object) -> str:
    """``value`` if it carries no line break; a CR or LF could inject headers of its own."""
    if not isinstance(value, str):
        raise EmailInputError.at(field_name, f"expected a string, got {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise HeaderInjection.at(field_name, "contains a CR or LF character (header injection)")
    return value


def parse_address(field_name: str, raw: object, *, strict: bool = True) -> Address:
    """One mailbox such as ``"Zoë <zoe@example.com>"``; ``strict`` also checks the domain."""
    if not isinstance(raw, str):
        raise InvalidAddress.at(field_name, f"expected a string, got {type(raw).__name__}")
    check_header_value(field_name, raw)
    header = policy.default.header_factory("To", raw)
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if len(header.addresses) != 1 or defects or not header.addresses[0].domain:
        raise InvalidAddress.at(field_name, f"{raw!r} is not one valid email address")
    parsed = header.addresses[0]
    if not strict:
        return parsed
    try:
        valid = validate_email(parsed.addr_spec, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress.at(field_name, f"{raw!r} is not a valid address: {exc}") from None
    # The ASCII (IDNA) form of the domain works in SMTP envelopes and headers alike.
    return Address(
        display_name=parsed.display_name, username=valid.local_part, domain=valid.ascii_domain
    )


def _address_list(field_name: str, value: object) -> tuple[Address, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InvalidAddress.at(field_name, "expected a string or a list of strings")
    return tuple(parse_address(f"{field_name}[{i}]", item) for i, item in enumerate(items))


@dataclass(frozen=True)
class AttachmentSpec:
    """One attachment: a filename and either an S3 key (in ``TASKAPP_BUCKET``) or base64 content."""

    filename: str
    s3_key: str | None = None
    content: str | None = None
    content_type: str | None = None

    @classmethod
    def parse(cls, field_name: str, raw: object) -> AttachmentSpec:
        if not isinstance(raw, Mapping):
            raise AttachmentError.at(field_name, "expected an object with filename and content")
        unknown = set(raw) - {"filename", "s3_key", "content", "content_type"}
        if unknown:
            raise AttachmentError.at(field_name, f"unknown keys {sorted(unknown)}")
        filename = raw.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            raise AttachmentError.at(f"{field_name}.filename", "missing or empty")
        check_header_value(f"{field_name}.filename", filename)
        if ("s3_key" in raw) == ("content" in raw):
            raise AttachmentError.at(field_name, "give exactly one of s3_key or content")
        content_type = raw.get("content_type")
        if content_type is not None:
            check_header_value(f"{field_name}.content_type", content_type)
            if content_type.count("/") != 1:
                raise AttachmentError.at(f"{field_name}.content_type", "expected type/subtype")
        for key in ("s3_key", "content"):
            if key in raw and not isinstance(raw[key], str):
                raise AttachmentError.at(f"{field_name}.{key}", "expected a string")
        return cls(filename, raw.get("s3_key"), raw.get("content"), content_type)


@dataclass(frozen=True)
class EmailRequest:
    """A validated ``email.send`` call: who, what, and with which template or bodies."""

    to: tuple[Address, ...]
    subject: str | None = None
    body: str | None = None
    html: str | None = None
    template: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    attachments: tuple[AttachmentSpec, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def recipients(self) -> tuple[Address, ...]:
        """Every envelope recipient, Bcc included, each once."""
        seen: dict[str, Address] = {}
        for address in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(address.addr_spec.lower(), address)
        return tuple(seen.values())

    @classmethod
    def build(
        cls,
        to: object,
        subject: object = None,
        *,
        body: object = None,
        html: object = None,
        template: object = None,
        context: object = None,
        cc: object = None,
        bcc: object = None,
        reply_to: object = None,
        attachments: object = None,
        headers: object = None,
    ) -> EmailRequest:
        """Check the arguments of ``email.send``; raise the specific error for the first problem."""
        request = cls(
            to=_address_list("to", to),
            cc=_address_list("cc", cc),
            bcc=_address_list("bcc", bcc),
            reply_to=_address_list("reply_to", reply_to),
            subject=None if subject is None else check_header_value("subject", subject),
            body=_optional_text("body", body),
            html=_optional_text("html", html),
            template=_optional_text("template", template),
            context=_context(context),
            attachments=_attachments(attachments),
            headers=_headers(headers),
        )
        if not request.recipients:
            raise NoRecipients.at("to", "no recipients: to, cc and bcc are all empty")
        if request.template and (request.body is not None or request.html is not None):
            raise EmailInputError.at("template", "give a template or body/html, not both")
        if not request.template and request.body is None and request.html is None:
            raise EmailInputError.at("body", "no content: give body, html or a template")
        return request


def check_idempotency_key(key: object) -> str:
    """The key, if it is a short single-line string."""
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise EmailInputError.at("idempotency_key", f"expected 1-{MAX_IDEMPOTENCY_KEY} characters")
    return check_header_value("idempotency_key", key)


def _optional_text(field_name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise EmailInputError.at(field_name, f"expected a string, got {type(value).__name__}")


def _context(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EmailInputError.at("context", "expected an object")
    return dict(value)


def _attachments(value: object) -> tuple[AttachmentSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise AttachmentError.at("attachments", "expected a list")
    return tuple(AttachmentSpec.parse(f"attachments[{i}]", item) for i, item in enumerate(value))


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise EmailInputError.at("headers", "expected an object of name -> value")
    checked = []
    for name, header_value in value.items():
        where = f"headers[{name!r}]"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise HeaderInjection.at(where, "is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise EmailInputError.at(where, "is set by taskapp and cannot be overridden")
        checked.append((name, check_header_value(where, header_value)))
    return tuple(checked)
