"""Header injection, as an attacker would try it: raw line breaks, RFC 2047 encoded words that
decode to them, template values, and every header we write. Whatever the interpreter does with
such a value (3.11.7 and 3.12.1 write it out as new header lines), we refuse it first."""

from __future__ import annotations

import base64
import contextlib
import email.errors
import sys
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskapp.email import compose as compose_module
from taskapp.email.attachments import Attachment
from taskapp.email.compose import compose
from taskapp.email.errors import HeaderInjection
from taskapp.email.request import EmailRequest
from taskapp.email.templates import render
from taskapp.errors import PermanentError

SENDER = Address("Shop", "orders", "shop.example.com")
# The reproduction from issue 13: an encoded word that decodes to CR LF, a header and a body.
INVOICE = "=?utf-8?q?Invoice=0D=0AContent-Type:_text/html=0D=0A=0D=0A<a_href=x>Pay</a>?="
WELCOME = {"steps": [], "account_url": "https://x.example/a"}
# Every character str.splitlines() breaks at, and NUL (stated here, not taken from the code).
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00"
HEADER_NAMES = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]


def q_word(text: str) -> str:
    """``text`` as one RFC 2047 Q-encoded word (every byte but letters and digits as =XX)."""
    encoded = "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"={b:02X}" for b in text.encode()
    )
    return f"=?utf-8?q?{encoded}?="


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def send(**options: Any) -> bytes:
    """Build and compose a request as ``email.send`` would; the message's bytes."""
    args = {"to": "ann@example.com", "subject": "Hi", "body": "hello", **options}
    request = EmailRequest.build(args.pop("to"), args.pop("subject"), **args)
    rendered = render(request.template, request.context) if request.template else None
    attachments = [Attachment(a.filename, "text/plain", b"x") for a in request.attachments]
    return compose(request, rendered, attachments, sender=SENDER, idempotency_key="k").data


def test_the_issue_13_invoice_subject_is_refused_naming_the_subject() -> None:
    # when the subject is an encoded word that decodes to a Content-Type header and a body
    with pytest.raises(HeaderInjection) as caught:
        send(subject=INVOICE)
    # then it is a permanent error about the subject, before any message exists
    assert isinstance(caught.value, PermanentError)
    assert caught.value.field == "subject"
    assert str(caught.value).startswith("subject: contains a line break or NUL (U+000D) once")


@pytest.mark.parametrize("char", sorted(LINE_BREAKS))
def test_every_line_break_in_a_subject_is_a_permanent_error_not_a_crash(char: str) -> None:
    # \x85 and \u2028 used to reach the email package, whose bare ValueError was a crash
    for subject in (f"Hi{char}there", q_word(f"Hi{char}there"), b_word(f"Hi{char}there")):
        with pytest.raises(HeaderInjection, match=rf"^subject: .*U\+{ord(char):04X}"):
            send(subject=subject)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"to": q_word("Ann\r\nBcc: v@x.org") + " <ann@example.com>"}, "to[0]"),
        ({"cc": [b_word("C\nBcc: v@x.org") + " <c@example.com>"]}, "cc[0]"),
        ({"reply_to": '"' + q_word("R\r\nX: y") + '" <r@example.com>'}, "reply_to[0]"),
        ({"headers": {"X-Tag": q_word("a\r\nBcc: v@x.org")}}, "headers['X-Tag']"),
        (
            {"attachments": [{"filename": q_word("a\r\nX: y.txt"), "content": ""}]},
            "attachments[0].filename",
        ),
        (
            {
                "attachments": [
                    {
                        "filename": "a.txt",
                        "content": "",
                        "content_type": "text/" + q_word("plain\r\nX: y"),
                    }
                ]
            },
            "attachments[0].content_type",
        ),
        ({"subject": q_word(q_word("nested\r\nBcc: v@x.org"))}, "subject"),
        ({"subject": "=?x-unknown*en?q?a=0D=0AX:_y?="}, "subject"),
        ({"subject": "glued" + q_word("\r\nX: y")}, "subject"),
    ],
)
def test_encoded_line_breaks_are_refused_in_every_header_we_write(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(HeaderInjection) as caught:
        send(**options)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_a_template_value_that_decodes_to_a_line_break_is_refused_naming_the_subject() -> None:
    # given the welcome template, whose subject interpolates {{ name }}
    context = {**WELCOME, "name": INVOICE}
    # when it is sent without a subject of its own
    with pytest.raises(HeaderInjection) as caught:
        send(subject=None, body=None, template="welcome", context=context)
    # then the rendered subject is refused, and the message points at the context
    assert caught.value.field == "subject"
    assert "rendered from template 'welcome'" in str(caught.value)
    assert "check its context values" in str(caught.value)


def test_a_bulk_send_refuses_an_injecting_template_value_before_fanning_out() -> None:
    from taskapp.email.bulk import prepare

    # given a bulk send whose first recipient's name decodes to a line break
    recipients = [{"to": "a@example.com", "context": {"name": INVOICE}}, "b@example.com"]
    # then the bulk task fails up front, naming the subject, instead of every email failing
    with pytest.raises(HeaderInjection, match="^subject: as rendered from template 'welcome'"):
        prepare(recipients, None, {"template": "welcome", "context": WELCOME})


def test_composition_refuses_a_header_it_would_write_as_two_lines_even_unvalidated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a request that skipped EmailRequest.build's checks, and compose's own subject check
    monkeypatch.setattr(compose_module, "check_header_value", lambda field, value: value)
    to = (Address("Ann", "ann", "example.com"),)
    unchecked = [
        (EmailRequest(to=to, subject=INVOICE, body="b"), [], "subject"),
        (
            EmailRequest(to=to, subject="s", body="b", headers=(("X-Tag", INVOICE),)),
            [],
            "headers['X-Tag']",
        ),
        (
            EmailRequest(to=to, subject="s", body="b"),
            [Attachment(q_word("a\r\nX: y"), "text/plain", b"x")],
            "attachments[0].filename",
        ),
    ]
    for request, attachments, field in unchecked:
        # when it is composed
        try:
            composed = compose(request, None, attachments, sender=SENDER, idempotency_key="k")
        except HeaderInjection as refused:
            # then an interpreter that would write the header as two lines (3.11.7, 3.12.1)
            # is stopped by our check of the folded header, which names the field
            assert "more than one" in str(refused)
            assert refused.field == field
            continue
        # or one that encodes it safely (3.13) wrote no header of the attacker's
        assert sys.version_info >= (3, 12, 5), "3.11.7/3.12.1 must not get here"
        written = message_from_bytes(composed.data, policy=policy.default)
        assert written.get_content_type() == "text/plain"
        assert "X" not in written


def test_header_write_error_maps_to_header_injection_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a generator that refuses a header itself, as 3.13 (and 3.12.5+, 3.11.10+) can:
    # a stand-in, so this runs on every interpreter (3.13 encodes this value safely instead)
    refusal = type("HeaderWriteError", (email.errors.MessageError,), {})
    monkeypatch.setattr(email.errors, "HeaderWriteError", refusal, raising=False)

    def as_bytes(self: EmailMessage, *args: Any, **kwargs: Any) -> bytes:
        raise refusal("folded header contains newline: " + repr("X-Tag: a\r\nBcc: v"))

    monkeypatch.setattr(EmailMessage, "as_bytes", as_bytes)
    # and our own checks out of the way
    monkeypatch.setattr(compose_module, "check_header_value", lambda field, value: value)
    monkeypatch.setattr(compose_module, "_check_written", lambda msg, fields: None)
    request = EmailRequest(
        to=(Address("Ann", "ann", "example.com"),),
        subject="s",
        body="b",
        headers=(("X-Tag", q_word("a\r\nBcc: v")),),
    )
    # when it is composed; then the generator's refusal is our permanent error
    with pytest.raises(HeaderInjection, match=r"^headers\['X-Tag'\]: folded header contains"):
        compose(request, None, [], sender=SENDER, idempotency_key="k")


FIELDS = ["subject", "to", "reply_to", "header", "filename", "template"]
BREAKS = st.sampled_from(sorted(LINE_BREAKS))
# Text around the break: letters, digits, spaces and punctuation an attacker might add.
FILLER = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)


def _options(where: str, value: str) -> tuple[dict[str, Any], str]:
    """``email.send`` options that put ``value`` in header ``where``; the field that names it."""
    return {
        "subject": ({"subject": value}, "subject"),
        "to": ({"to": [f"{value} <ann@example.com>"]}, "to[0]"),
        "reply_to": ({"reply_to": f'"{value}" <r@example.com>'}, "reply_to[0]"),
        "header": ({"headers": {"X-Campaign": value}}, "headers['X-Campaign']"),
        "filename": (
            {"attachments": [{"filename": value + ".txt", "content": ""}]},
            "attachments[0].filename",
        ),
        "template": (
            {
                "subject": None,
                "body": None,
                "template": "welcome",
                "context": {**WELCOME, "name": value},
            },
            "subject",
        ),
    }[where]


@st.composite
def encoded(draw: st.DrawFn, text: str) -> str:
    """``text`` raw, or in a Q or B word (possibly nested), with filler around it."""
    encode = draw(st.sampled_from([lambda t: t, q_word, b_word, lambda t: q_word(b_word(t))]))
    before, after = draw(FILLER), draw(FILLER)
    glue = draw(st.sampled_from(["", " "]))
    return f"{before}{glue}{encode(text)}{glue}{after}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(FIELDS), data=st.data())
def test_generated_injections_never_add_a_header(where: str, data: st.DataObject) -> None:
    # given a line break (raw or encoded) carrying a header of the attacker's
    payload = data.draw(FILLER) + data.draw(BREAKS) + "Bcc: victim@example.org"
    value = data.draw(encoded(payload))
    options, field = _options(where, value)
    # when it is sent; then it is refused naming the field, or the message has no extra header
    try:
        raw = send(**options)
    except HeaderInjection as refused:
        assert refused.field == field, refused
        return
    msg = message_from_bytes(raw, policy=policy.default)
    assert "Bcc" not in msg, raw
    extra = {k for k in msg if k not in HEADER_NAMES} - {"Content-Transfer-Encoding"}
    assert extra <= {"Reply-To", "X-Campaign"}, raw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(
        st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=40
    ).filter(lambda t: t.strip() == t and t.strip()),
    encode=st.sampled_from([q_word, b_word]),
)
def test_encoded_words_without_line_breaks_still_send_intact(text: str, encode: Any) -> None:
    # given a subject that is one encoded word of ordinary text (any script, no line breaks)
    raw = send(subject=encode(text))
    # then it is sent, as the text it encodes
    msg = message_from_bytes(raw, policy=policy.default)
    assert " ".join(str(msg["Subject"]).split()) == " ".join(text.split())
    assert sorted(msg.keys()) == sorted(HEADER_NAMES + ["Content-Transfer-Encoding"])


# Fragments that steer generated text into the email package's encoded-word and address parsers.
FRAGMENTS = st.sampled_from(
    [
        "=?",
        "?=",
        "?q?",
        "?b?",
        "utf-8",
        "x-bogus*en",
        "=0D",
        "=0A",
        "=C2=85",
        "_",
        '"',
        "<",
        ">",
        "@",
        ",",
        ":",
        ";",
        "\\",
        "(",
        ")",
        " ",
        "\t",
        "\r\n",
        "\x85",
        "\u2028",
        "\\U",
    ]
)
HOSTILE_TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=4)), max_size=16).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE_TEXT, where=st.sampled_from(["subject", "to", "header", "filename"]))
def test_no_header_value_crashes_validation(text: str, where: str) -> None:
    # given any text in a header field: then building is fine or a permanent error, never a crash
    options = {
        "subject": {"subject": text},
        "to": {"to": [text or "x"]},
        "header": {"headers": {"X-Campaign": text}},
        "filename": {"attachments": [{"filename": text or "x", "content": ""}]},
    }[where]
    with contextlib.suppress(PermanentError):
        send(**options)
