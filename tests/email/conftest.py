"""Email test fixtures: a real SMTP server per test (STARTTLS + AUTH by default), TLS files, and
moto's SES with a verified sender. Helpers that read what was sent live in tests/email/outbox.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.email.outbox import use_smtp
from tests.email.smtp_server import TestSMTPServer, TLSFiles, make_tls_files


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_factory(tls_files: TLSFiles) -> Iterator[Callable[..., TestSMTPServer]]:
    """Start SMTP servers for one test: ``smtp_factory(tls=..., size_limit=...)``."""
    servers: list[TestSMTPServer] = []

    def start(**options: Any) -> TestSMTPServer:
        server = TestSMTPServer(tls_files, **options).start()
        servers.append(server)
        return server

    yield start
    from taskapp.email.smtp import close_connection

    close_connection()  # this thread's cached connection (unit tests send from here)
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(
    smtp_factory: Callable[..., TestSMTPServer], monkeypatch: pytest.MonkeyPatch
) -> TestSMTPServer:
    """A STARTTLS + AUTH server that the smtp backend (here and in the worker) points at."""
    server = smtp_factory()
    use_smtp(monkeypatch, server)
    return server


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Any:
    """SES on the session's moto server, with the sender's domain verified."""
    from taskapp.aws import client

    sesv2 = client("sesv2", settings)
    sesv2.create_email_identity(EmailIdentity="shop.example.com")
    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "ses")
    monkeypatch.setenv("TASKAPP_MAIL_FROM", "Shop <orders@shop.example.com>")
    return sesv2
