"""Email test fixtures: a real SMTP server per test (STARTTLS + AUTH by default), TLS files, the
session database migrated, and helpers that point the backend at a server or at moto's SES."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.email.smtp_server import TestSMTPServer, TLSFiles, make_tls_files


@pytest.fixture(scope="session", autouse=True)
def email_db() -> None:
    """The session database with every migration applied (idempotency keys among them)."""
    from taskapp.db import upgrade

    upgrade()


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


def use_smtp(monkeypatch: pytest.MonkeyPatch, server: TestSMTPServer, **options: str) -> None:
    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("TASKAPP_SMTP_URL", server.url(**options))


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Any:
    """SES on the session's moto server, with the sender's domain verified."""
    from taskapp.aws import client

    sesv2 = client("sesv2", settings)
    sesv2.create_email_identity(EmailIdentity="shop.example.com")
    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "ses")
    monkeypatch.setenv("TASKAPP_MAIL_FROM", "Shop <orders@shop.example.com>")
    return sesv2


def ses_sent(settings: Any, message_id: str) -> list[dict[str, Any]]:
    """Raw messages moto's SES holds with ``message_id``, read through moto's own API."""
    with urllib.request.urlopen(f"{settings.aws_endpoint_url}/moto-api/data.json") as resp:
        data = json.load(resp)
    raw = data.get("ses", {}).get("RawMessage", [])
    return [m for m in raw if m.get("id") == message_id]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def eml_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.eml"))
