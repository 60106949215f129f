"""A real SMTP server for the email tests: aiosmtpd with STARTTLS or implicit TLS, AUTH, and a
script of failure replies (``451`` N times, or ``550``), counting and parsing what it receives."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from taskapp.local.net import LOOPBACK, free_port

__all__ = ["TLSFiles", "make_tls_files", "Received", "TestSMTPServer"]


@dataclass(frozen=True)
class TLSFiles:
    """A self-signed certificate for 127.0.0.1/localhost; ``cafile`` is what clients trust."""

    certfile: Path
    keyfile: Path

    @property
    def cafile(self) -> Path:
        return self.certfile

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


def make_tls_files(directory: Path) -> TLSFiles:
    """Generate a key and a self-signed certificate (valid for 127.0.0.1 and localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskapp test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSFiles(certfile, keyfile)


@dataclass(frozen=True)
class Received:
    """One accepted message, with how its session looked."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        # The wire has CRLF line ends; Python's parser keeps them in decoded text otherwise.
        data = self.data.replace(b"\r\n", b"\n")
        try:  # SMTPUTF8 messages carry raw UTF-8 headers, which the bytes parser mangles
            return message_from_string(data.decode(), policy=policy.default)  # type: ignore[return-value]
        except UnicodeDecodeError:
            return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class _State:
    script: list[str] = field(default_factory=list)
    attempts: int = 0
    connections: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.state.lock:
            self.state.attempts += 1
            if self.state.script:
                return self.state.script.pop(0)
            self.state.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        return f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:12].upper()}"


class _Controller(Controller):
    def __init__(self, state: _State, **kwargs: Any) -> None:
        super().__init__(_Handler(state), **kwargs)
        self.state = state

    def factory(self) -> SMTP:
        with self.state.lock:
            self.state.connections += 1
        with warnings.catch_warnings():
            # "AUTH without requiring TLS": said of implicit TLS, which aiosmtpd cannot tell.
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()


class TestSMTPServer:
    """SMTP on 127.0.0.1. ``tls``: ``"starttls"`` (required), ``"implicit"`` or ``None``."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        tls_files: TLSFiles | None = None,
        *,
        tls: str | None = "starttls",
        credentials: tuple[str, str] | None = ("mailer", "s3cret p@ss"),
        size_limit: int | None = None,
    ) -> None:
        self.tls_files, self.tls, self.credentials = tls_files, tls, credentials
        self.size_limit = size_limit
        self.port = free_port()
        self.state = _State()
        self._controller: _Controller | None = None

    # -- control ------------------------------------------------------------------------------

    def start(self) -> TestSMTPServer:
        kwargs: dict[str, Any] = {
            "hostname": LOOPBACK,
            "port": self.port,
            "server_hostname": "smtp.test.local",  # skips a slow getfqdn()
            "data_size_limit": self.size_limit,
        }
        if self.tls == "starttls":
            assert self.tls_files
            kwargs.update(tls_context=self.tls_files.server_context(), require_starttls=True)
        elif self.tls == "implicit":
            assert self.tls_files
            kwargs.update(ssl_context=self.tls_files.server_context())
        if self.credentials:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                # aiosmtpd counts only STARTTLS as TLS; implicit TLS is encrypted from byte one.
                auth_require_tls=self.tls == "starttls",
            )
        self._controller = _Controller(self.state, **kwargs)
        self._controller.start()
        with self.state.lock:
            self.state.connections -= 1  # start() probes the port with one connection itself
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        """Stop and start on the same port: every open client connection goes stale."""
        self.stop()
        self.start()

    def answer(self, *replies: str) -> None:
        """Answer the next DATA commands with ``replies`` (e.g. ``"451 4.3.0 Try later"``)."""
        with self.state.lock:
            self.state.script.extend(replies)

    # -- what happened ------------------------------------------------------------------------

    @property
    def attempts(self) -> int:
        """DATA commands seen, failed ones included."""
        with self.state.lock:
            return self.state.attempts

    @property
    def connections(self) -> int:
        with self.state.lock:
            return self.state.connections

    @property
    def received(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.received)

    def url(self, *, password: str | None = None, **options: str) -> str:
        """The ``TASKAPP_SMTP_URL`` for this server (trusting its certificate)."""
        from urllib.parse import quote, urlencode

        scheme = "smtps" if self.tls == "implicit" else "smtp"
        auth = ""
        if self.credentials:
            user, secret = self.credentials
            auth = f"{quote(user, safe='')}:{quote(password or secret, safe='')}@"
        query = dict(options)
        if self.tls == "starttls":
            query.setdefault("starttls", "1")
        if self.tls and self.tls_files:
            query.setdefault("cafile", str(self.tls_files.cafile))
        query.setdefault("timeout", "5")
        return f"{scheme}://{auth}{LOOPBACK}:{self.port}?{urlencode(query)}"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, handled=False)  # unhandled failure: aiosmtpd answers 535
