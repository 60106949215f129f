"""SMTP delivery: URL settings, one reused connection per worker thread, and error translation.

``TASKAPP_SMTP_URL`` looks like ``smtp://user:pass@host:587?starttls=1`` or ``smtps://host:465``.
Query options: ``starttls`` (0/1), ``timeout`` (seconds, default 10), ``verify`` (0/1, check the
server certificate, default 1), ``cafile`` (PEM bundle to trust instead of the system's).

A prefork child runs one task at a time, so "per thread" is one connection per worker process;
the threads pool gets one per thread, since an SMTP session cannot carry two transactions at
once. A cached connection is checked with NOOP before reuse and reopened when it went stale
(the server's idle timeout closed it), and it is never reused across a fork.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from opentelemetry import trace

from taskapp.email.compose import Composed, check_size
from taskapp.email.errors import BackendMisconfigured, DeliveryDeferred, DeliveryRejected

__all__ = ["SmtpConfig", "SmtpBackend", "Delivery", "close_connection"]

DEFAULT_TIMEOUT = 10.0
#: smtplib has no OpenTelemetry instrumentation: one span per transaction (a no-op untraced).
_tracer = trace.get_tracer(__name__)
_QUEUED_AS = re.compile(r"queued as\s+<?([^\s>]+)", re.IGNORECASE)
_OPTIONS = {"starttls", "timeout", "verify", "cafile"}


@dataclass(frozen=True)
class Delivery:
    """What a backend reports back: the provider's id, and recipients it refused."""

    provider_message_id: str | None
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmtpConfig:
    """A parsed ``TASKAPP_SMTP_URL``; the password never appears in its ``repr``."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    verify: bool = True
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``url``; a bad one is a ``BackendMisconfigured`` that never echoes the URL."""
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise BackendMisconfigured("TASKAPP_SMTP_URL: expected smtp://host or smtps://host")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - _OPTIONS
        if unknown:
            raise BackendMisconfigured(f"TASKAPP_SMTP_URL: unknown options {sorted(unknown)}")
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
            timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise BackendMisconfigured("TASKAPP_SMTP_URL: bad port or timeout") from None
        config = cls(
            host=parts.hostname,
            port=port,
            implicit_tls=parts.scheme == "smtps",
            starttls=_flag(query, "starttls", False),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
            verify=_flag(query, "verify", True),
            cafile=query.get("cafile"),
        )
        if config.implicit_tls and config.starttls:
            raise BackendMisconfigured("TASKAPP_SMTP_URL: smtps:// already uses TLS; drop starttls")
        return config

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise BackendMisconfigured(f"TASKAPP_SMTP_URL: {name} must be 0 or 1")


class SmtpBackend:
    """Deliver over SMTP, reusing this thread's connection."""

    name = "smtp"
    max_recipients: int | None = None

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, composed: Composed) -> Delivery:
        """Run one SMTP transaction; raise ``DeliveryDeferred`` or ``DeliveryRejected``."""
        with _translated(self.config):
            conn = _connection(self.config)
            size = conn.esmtp_features.get("size", "")
            check_size(composed, int(size) if size.isdigit() and int(size) else None, "smtp server")
            with _tracer.start_as_current_span("smtp.send", kind=trace.SpanKind.CLIENT) as span:
                span.set_attribute("server.address", self.config.host)
                reply, refused = _transact(conn, composed)
        match = _QUEUED_AS.search(reply)
        return Delivery(match.group(1) if match else None, refused)


def _transact(conn: smtplib.SMTP, composed: Composed) -> tuple[str, dict[str, str]]:
    # smtplib.sendmail() throws away the reply to DATA, which carries the server's queue id.
    options = [f"SIZE={len(composed.data)}"] if conn.has_extn("size") else []
    if composed.smtputf8:
        if not conn.has_extn("smtputf8"):
            raise DeliveryRejected("smtp: an address needs SMTPUTF8, which the server lacks")
        options += ["SMTPUTF8", "BODY=8BITMIME"]
    code, reply = conn.mail(composed.sender, options)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, composed.sender)
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in composed.recipients:
        code, reply = conn.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    if len(refused) == len(composed.recipients):
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = conn.data(composed.data)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return _text(reply), {r: f"{c} {_text(m)}" for r, (c, m) in refused.items()}


@contextmanager
def _translated(config: SmtpConfig) -> Iterator[None]:
    """Map smtplib/socket errors to our two kinds; drop the connection after any failure."""
    try:
        yield
    except (DeliveryRejected, DeliveryDeferred, BackendMisconfigured):
        close_connection()
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        close_connection()
        answers = {r: f"{c} {_text(m)}" for r, (c, m) in exc.recipients.items()}
        codes = [c for c, _ in exc.recipients.values()]
        kind = DeliveryDeferred if any(400 <= c < 500 for c in codes) else DeliveryRejected
        raise kind(f"smtp: every recipient refused: {answers}") from None
    except smtplib.SMTPNotSupportedError as exc:
        close_connection()
        raise BackendMisconfigured(f"smtp: {exc} on {config.host}:{config.port}") from None
    except smtplib.SMTPResponseException as exc:
        close_connection()
        answer = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            raise DeliveryDeferred(f"smtp: server answered {answer}") from None
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            raise BackendMisconfigured(f"smtp: authentication failed: {answer}") from None
        raise DeliveryRejected(f"smtp: server answered {answer}") from None
    except ssl.SSLCertVerificationError as exc:
        close_connection()
        raise BackendMisconfigured(f"smtp: TLS certificate not trusted: {exc.reason}") from None
    except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connects
        close_connection()
        raise DeliveryDeferred(f"smtp: {type(exc).__name__}: {exc}") from None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


# -- the per-thread connection -------------------------------------------------------------------

_local = threading.local()


@dataclass
class _Cached:
    config: SmtpConfig
    pid: int
    conn: smtplib.SMTP


def _connection(config: SmtpConfig) -> smtplib.SMTP:
    cached: _Cached | None = getattr(_local, "cached", None)
    if cached is not None:
        if cached.pid == os.getpid() and cached.config == config and _alive(cached.conn):
            return cached.conn
        close_connection()
    conn = _open(config)
    _local.cached = _Cached(config, os.getpid(), conn)
    return conn


def _alive(conn: smtplib.SMTP) -> bool:
    try:
        return conn.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _open(config: SmtpConfig) -> smtplib.SMTP:
    context = config.tls_context()
    conn: smtplib.SMTP
    if config.implicit_tls:
        conn = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
    else:
        conn = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    try:
        conn.ehlo()
        if config.starttls:
            conn.starttls(context=context)  # raises SMTPNotSupportedError if not offered
            conn.ehlo()
        if config.username:
            conn.login(config.username, config.password or "")
    except BaseException:
        conn.close()
        raise
    return conn


def close_connection() -> None:
    """Close this thread's cached connection (QUIT if it is ours and still open)."""
    cached: _Cached | None = getattr(_local, "cached", None)
    _local.cached = None
    if cached is None:
        return
    try:
        if cached.pid == os.getpid():
            cached.conn.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        cached.conn.close()
