"""What a caller asked to send, checked: addresses parsed, headers safe, attachments well-formed.

Everything here is pure (no network); a bad request raises an ``EmailInputError`` subclass whose
message names the field, so it fails once and is never retried.

Header values are checked as written *and* as decoded. Python's ``email`` package decodes RFC
2047 encoded words when a header is set and, on 3.11.7 and 3.12.1 (fixed in 3.11.10, 3.12.5 and
3.13), writes the decoded text out as is: ``=?utf-8?q?x=0D=0ABcc:_v@example.com?=`` in a
subject became a real ``Bcc`` header. So a value is refused if a line break appears in it or in
any decoding of it, whatever the interpreter does; ``taskapp.email.compose`` checks the folded
header lines again before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import policy
from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.header import decode_header
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
    "decoded_views",
    "LINE_BREAKS",
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
#: Every character ``str.splitlines()`` breaks a line at, and NUL. The email package refuses
#: some of them with a bare ValueError (a crash), writes others out, and MTAs and mail clients
#: differ on which end a header line: none of them belongs in a header value.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00")
#: Encoded words inside encoded words: decoded this many times over, deeper nesting is refused.
MAX_DECODE_DEPTH = 4


def check_header_value(field_name: str, value: object) -> str:
    """``value`` if neither it nor any decoding of its encoded words carries a line break."""
    if not isinstance(value, str):
        raise EmailInputError.at(field_name, f"expected a string, got {type(value).__name__}")
    _refuse_line_breaks(field_name, value, "")
    for decoded in decoded_views(field_name, value):
        _refuse_line_breaks(field_name, decoded, " once its RFC 2047 encoded words are decoded")
    return value


def _refuse_line_breaks(field_name: str, text: str, where: str) -> None:
    found = next((char for char in text if char in LINE_BREAKS), None)
    if found is not None:
        raise HeaderInjection.at(
            field_name,
            f"contains a line break or NUL (U+{ord(found):04X}){where} (header injection)",
        )


def decoded_views(field_name: str, value: str) -> Iterator[str]:
    """Each way ``value``'s RFC 2047 encoded words decode: by ``email.header.decode_header``
    and as the email package's header parser reads them, repeated for nested encoded words."""
    seen, pending = {value}, [value]
    for _ in range(MAX_DECODE_DEPTH):
        pending = [
            view
            for text in pending
            if "=?" in text
            for view in (_decode_words(text), _as_header_parser_reads(field_name, text))
            if view is not None and view not in seen
        ]
        for view in pending:
            seen.add(view)
            yield view
    if any("=?" in text for text in pending):
        raise HeaderInjection.at(
            field_name, f"has RFC 2047 encoded words nested more than {MAX_DECODE_DEPTH} deep"
        )


def _decode_words(text: str) -> str | None:
    try:
        parts = decode_header(text)
    except HeaderParseError:
        return None  # bad base64 in a word: the header parser's view below still applies
    return "".join(_part_text(part, charset) for part, charset in parts)


def _part_text(part: bytes | str, charset: str | None) -> str:
    if isinstance(part, str):
        return part
    if charset is None:
        # Text between words, which decode_header encoded with raw-unicode-escape: Latin-1 is
        # that encoding's exact inverse up to U+00FF and cannot fail (the raw value was checked).
        return part.decode("latin-1")
    try:
        # As the email package decodes a word: RFC 2231 language dropped, bad bytes kept.
        return part.decode(charset.split("*", 1)[0], "surrogateescape")
    except LookupError:
        return part.decode("ascii", "surrogateescape")


def _as_header_parser_reads(field_name: str, text: str) -> str | None:
    try:
        return str(policy.default.header_factory("X-Taskapp-Check", text))
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise EmailInputError.at(field_name, f"cannot be read as a header value: {exc}") from None


def parse_address(field_name: str, raw: object, *, strict: bool = True) -> Address:
    """One mailbox such as ``"Zoë <zoe@example.com>"``; ``strict`` also checks the domain."""
    if not isinstance(raw, str):
        raise InvalidAddress.at(field_name, f"expected a string, got {type(raw).__name__}")
    check_header_value(field_name, raw)
    try:
        header = policy.default.header_factory("To", raw)
    except (HeaderParseError, ValueError, IndexError) as exc:
        # e.g. an encoded word in the name that decodes to a line break: "address parts
        # cannot contain CR or LF" (check_header_value refuses those first; this is the net).
        raise InvalidAddress.at(field_name, f"{raw!r} does not parse: {exc}") from None
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if len(header.addresses) != 1 or defects or not header.addresses[0].domain:
        raise InvalidAddress.at(field_name, f"{raw!r} is not one valid email address")
    parsed: Address = header.addresses[0]
    # The name as the address parser decoded it (quoted strings included).
    check_header_value(field_name, parsed.display_name)
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
